#include "api/http/error_status.h"

#include <gtest/gtest.h>

namespace kiln::api {
namespace {

TEST(ErrorStatus, ClientErrorsMapTo4xx) {
  EXPECT_EQ(http_status_for(Error::invalid_argument("bad name")), 400);
  EXPECT_EQ(http_status_for(Error::not_found("no such vm")), 404);
  EXPECT_EQ(http_status_for(Error::already_exists("name taken")), 409);
  EXPECT_EQ(http_status_for(Error::failed_precondition("vm is stopped")), 409);
  EXPECT_EQ(http_status_for(Error(ErrorCategory::kPermissionDenied, "no")), 403);
}

TEST(ErrorStatus, ServerAndPeerErrorsMapTo5xx) {
  EXPECT_EQ(http_status_for(Error::internal("bug")), 500);
  EXPECT_EQ(http_status_for(Error(ErrorCategory::kIo, "disk")), 500);
  EXPECT_EQ(http_status_for(Error::unsupported("no")), 501);
  EXPECT_EQ(http_status_for(Error::protocol("bad manifest")), 502);
  EXPECT_EQ(http_status_for(Error::unavailable("guest gone")), 503);
  EXPECT_EQ(http_status_for(Error::timeout("slow")), 504);
}

TEST(ErrorStatus, ErrnoErrorsKeepTheirMeaningThroughTheMapping) {
  EXPECT_EQ(http_status_for(Error::from_errno("open x", ENOENT)), 404);
  EXPECT_EQ(http_status_for(Error::from_errno("mkdir x", EEXIST)), 409);
  EXPECT_EQ(http_status_for(Error::from_errno("open x", EACCES)), 403);
  EXPECT_EQ(http_status_for(Error::from_errno("write x", ENOSPC)), 500);
}

}  // namespace
}  // namespace kiln::api

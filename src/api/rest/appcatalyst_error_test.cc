#include <gtest/gtest.h>

#include "api/rest/rest_api.h"

namespace kiln::api::rest {
namespace {

// AppCatalyst's clients (docker-machine's driver, Vagrant's plugin) read {"code", "message"}, for a
// handler's error as for the server's own 404.
TEST(AppCatalystErrorBody, CodeAndMessage) {
  EXPECT_EQ(appcatalyst_error_body(404, Error::not_found("no such vm: a")),
            (Json{{"code", 404}, {"message", "no such vm: a"}}));

  http::Router router(appcatalyst_error_body);
  router.add("GET", "/api/vms/{id}", [](http::Request& request) -> Result<http::Reply> {
    return Error::not_found(fmt::format("no such vm: {}", request.param("id")));
  });
  http::Request request;
  request.method = "GET";
  request.target = request.path = "/api/vms/a";
  http::Reply reply = router.dispatch(request);
  ASSERT_TRUE(std::holds_alternative<http::Response>(reply));
  const auto& response = std::get<http::Response>(reply);
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(*parse_json(response.body), (Json{{"code", 404}, {"message", "no such vm: a"}}));
  request.target = request.path = "/api/nowhere";
  EXPECT_EQ(parse_json(std::get<http::Response>(router.dispatch(request)).body)->at("code"), 404);
}

}  // namespace
}  // namespace kiln::api::rest

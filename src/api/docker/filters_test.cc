#include "api/docker/filters.h"

#include <gtest/gtest.h>

namespace kiln::api::docker {
namespace {

http::QueryParams query(std::string_view text) {
  return http::QueryParams::parse(text).value();
}

TEST(FiltersTest, ReadsBothJsonShapes) {
  // docker-py sends lists; the docker CLI sends {"value": true} maps.
  auto old_shape = Filters::parse(query("filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"), {"label"});
  ASSERT_TRUE(old_shape) << old_shape.error().message();
  EXPECT_EQ(old_shape->get("label"), std::vector<std::string>{"a=b"});
  auto new_shape = Filters::parse(query("filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D"), {"label"});
  ASSERT_TRUE(new_shape) << new_shape.error().message();
  EXPECT_EQ(new_shape->get("label"), std::vector<std::string>{"a=b"});
  EXPECT_TRUE(Filters::parse(query(""), {})->empty());
}

TEST(FiltersTest, RefusesUnknownNamesAndMalformedValuesLikeDockerd) {
  auto unknown = Filters::parse(query("filters=%7B%22colour%22%3A%5B%22red%22%5D%7D"), {"label"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message(), "invalid filter 'colour'");
  EXPECT_EQ(unknown.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_FALSE(Filters::parse(query("filters=notjson"), {"label"}));
  EXPECT_FALSE(Filters::parse(query("filters=%5B1%5D"), {"label"}));                      // [1]
  EXPECT_FALSE(Filters::parse(query("filters=%7B%22label%22%3A5%7D"), {"label"}));        // {"label":5}
  EXPECT_FALSE(Filters::parse(query("filters=%7B%22label%22%3A%5B5%5D%7D"), {"label"}));  // {"label":[5]}
}

TEST(FiltersTest, BooleanFilters) {
  auto yes = Filters::parse(query("filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D"), {"dangling"}).value();
  EXPECT_EQ(yes.boolean("dangling").value(), std::optional<bool>(true));
  auto bad = Filters::parse(query("filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D"), {"dangling"}).value();
  EXPECT_FALSE(bad.boolean("dangling"));
  EXPECT_EQ(yes.boolean("absent").value(), std::nullopt);
}

TEST(FiltersTest, ReferencePatterns) {
  EXPECT_TRUE(reference_matches("busybox", "busybox:latest"));
  EXPECT_TRUE(reference_matches("busybox:lat*", "busybox:latest"));
  EXPECT_FALSE(reference_matches("busybox:1.*", "busybox:latest"));
  EXPECT_TRUE(reference_matches("*/app", "localhost:5000/app:v1"));
  EXPECT_FALSE(reference_matches("*", "localhost:5000/app:v1"));  // '*' stops at '/', as in dockerd
  EXPECT_FALSE(reference_matches("busy", "busybox:latest"));
  EXPECT_TRUE(reference_matches("busybox", "busybox@sha256:0123"));
  EXPECT_FALSE(reference_matches("busybox:latest", "busybox@sha256:0123"));
}

}  // namespace
}  // namespace kiln::api::docker

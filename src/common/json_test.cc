#include "common/json.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(Json, ParseErrorsAreValues) {
  auto bad = parse_json("{\"a\": ");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().category(), ErrorCategory::kInvalidArgument);
  auto good = parse_json(R"({"a": 1})");
  ASSERT_TRUE(good);
  EXPECT_EQ((*good)["a"], 1);
}

TEST(Json, StrictAccessors) {
  Json body = Json::parse(R"({"name": "vm1", "cpus": 2, "debug": true, "memory": "lots"})");
  EXPECT_EQ(*required_string(body, "name"), "vm1");
  EXPECT_EQ(*required_int(body, "cpus"), 2);
  EXPECT_EQ(**optional_bool(body, "debug"), true);
  EXPECT_FALSE(optional_string(body, "absent")->has_value());

  auto wrong = required_int(body, "memory");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().message(), "field \"memory\" must be an integer");
  auto missing = required_string(body, "image");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(), "field \"image\" is required");
}

TEST(Json, UnknownFieldsAreNamed) {
  Json body = Json::parse(R"({"name": "vm1", "colour": "red"})");
  constexpr std::string_view kAllowed[] = {"name", "cpus"};
  auto result = reject_unknown_fields(body, kAllowed);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message(), "unknown field \"colour\"");
  EXPECT_FALSE(reject_unknown_fields(Json::array(), kAllowed));
}

}  // namespace
}  // namespace kiln

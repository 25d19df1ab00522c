#include "api/http/query.h"

#include <gtest/gtest.h>

namespace kiln::api::http {
namespace {

TEST(PercentDecode, DecodesEscapesAndOptionallyPlus) {
  EXPECT_EQ(*percent_decode("a%20b%2Fc"), "a b/c");
  EXPECT_EQ(*percent_decode("a+b"), "a+b");
  EXPECT_EQ(*percent_decode("a+b", true), "a b");
  EXPECT_EQ(*percent_decode("%e2%9C%93"), "\xe2\x9c\x93");
}

TEST(PercentDecode, RejectsMalformedEscapes) {
  for (const char* text : {"%", "%2", "%G1", "abc%z"}) EXPECT_FALSE(percent_decode(text)) << text;
}

TEST(QueryParams, KeepsOrderAndRepeatedKeys) {
  Result<QueryParams> query = QueryParams::parse("all=1&filter=a%3Db&filter=c+d&&flag&empty=");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->get("all"), "1");
  EXPECT_EQ(query->get_all("filter"), (std::vector<std::string_view>{"a=b", "c d"}));
  EXPECT_TRUE(query->has("flag"));
  EXPECT_EQ(query->get("flag"), "");
  EXPECT_FALSE(query->has("missing"));
  EXPECT_EQ(query->entries().size(), 5u);
}

TEST(QueryParams, DockerBooleans) {
  QueryParams query = *QueryParams::parse("a=1&b=true&c=0&d=false&e=&f=False");
  EXPECT_TRUE(query.get_bool("a"));
  EXPECT_TRUE(query.get_bool("b"));
  EXPECT_FALSE(query.get_bool("c", true));
  EXPECT_FALSE(query.get_bool("d", true));
  EXPECT_FALSE(query.get_bool("e", true));
  EXPECT_FALSE(query.get_bool("f", true));
  EXPECT_TRUE(query.get_bool("absent", true));
}

TEST(QueryParams, MalformedEscapeIsAnError) {
  Result<QueryParams> query = QueryParams::parse("a=%zz");
  ASSERT_FALSE(query);
  EXPECT_EQ(query.error().category(), ErrorCategory::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::api::http

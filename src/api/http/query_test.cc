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

TEST(QueryParams, NumbersNameTheParameterWhenRefused) {
  QueryParams query = *QueryParams::parse("h=24&w=-1&tail=99999999999999999999&big=70000");
  EXPECT_EQ(*query.get_unsigned<uint16_t>("h", 1, 65535), std::optional<uint16_t>(24));
  EXPECT_EQ(*query.get_unsigned<uint16_t>("absent", 1, 65535), std::nullopt);
  auto negative = query.get_unsigned<uint16_t>("w", 1, 65535);
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(negative.error().message(),
            "query parameter w must be a whole number from 1 to 65535, not \"-1\"");
  EXPECT_FALSE(query.get_unsigned<uint64_t>("tail"));
  EXPECT_FALSE(query.get_unsigned<uint16_t>("big"));
}

TEST(QueryParams, DurationsAreSecondsOrCarryAUnit) {
  constexpr std::chrono::milliseconds kMax(86400 * 1000);
  QueryParams query = *QueryParams::parse("t=10&timeout=250ms&bad=-1");
  EXPECT_EQ(*query.get_duration("t", kMax), std::optional(std::chrono::milliseconds(10000)));
  EXPECT_EQ(*query.get_duration("timeout", kMax), std::optional(std::chrono::milliseconds(250)));
  EXPECT_EQ(*query.get_duration("absent", kMax), std::nullopt);
  auto negative = query.get_duration("bad", kMax);
  ASSERT_FALSE(negative);
  EXPECT_TRUE(negative.error().message().starts_with("query parameter bad must be a duration"));
}

}  // namespace
}  // namespace kiln::api::http

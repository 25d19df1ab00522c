#include "common/units.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(ParseSize, SuffixesAreBinaryAndCaseInsensitive) {
  EXPECT_EQ(*parse_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("512m"), 512ull << 20);
  EXPECT_EQ(*parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(*parse_size("1gb"), 1ull << 30);
  EXPECT_EQ(*parse_size("4k"), 4096u);
  EXPECT_EQ(*parse_size("100b"), 100u);
}

TEST(ParseSize, BareNumbersUseTheGivenUnit) {
  EXPECT_EQ(*parse_size("100"), 100u);
  EXPECT_EQ(*parse_size("256", 1 << 20), 256ull << 20);
}

TEST(ParseSize, RejectsGarbageAndOverflow) {
  for (auto bad : {"", "lots", "M", "12X", "-5M", "1.5G", "99999999999999999999"}) {
    auto result = parse_size(bad);
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument);
  }
  EXPECT_FALSE(parse_size("99999999999T"));
}

TEST(ParseDockerSize, DecimalUnitsFractionsAndSpacesAsGoUnits) {
  EXPECT_EQ(*parse_docker_size("10m"), 10'000'000);
  EXPECT_EQ(*parse_docker_size("1k"), 1000);
  EXPECT_EQ(*parse_docker_size("1KiB"), 1000);  // FromHumanSize is decimal whatever the suffix says
  EXPECT_EQ(*parse_docker_size("2GB"), 2'000'000'000);
  EXPECT_EQ(*parse_docker_size("1.5k"), 1500);
  EXPECT_EQ(*parse_docker_size("1 p"), 1'000'000'000'000'000);
  EXPECT_EQ(*parse_docker_size("100"), 100);
  EXPECT_EQ(*parse_docker_size("100b"), 100);
  EXPECT_EQ(*parse_docker_size("0"), 0);
  EXPECT_EQ(*parse_docker_size("0.5"), 0);
}

TEST(ParseDockerSize, RefusesInGoUnitsWords) {
  EXPECT_EQ(parse_docker_size("-1").error().message(), "invalid size: '-1'");
  EXPECT_EQ(parse_docker_size("lots").error().message(), "invalid size: 'lots'");
  EXPECT_EQ(parse_docker_size("").error().message(), "invalid size: ''");
  EXPECT_EQ(parse_docker_size("10x").error().message(), "invalid suffix: 'x'");
  EXPECT_EQ(parse_docker_size("10kbb").error().message(), "invalid suffix: 'kbb'");
  EXPECT_EQ(parse_docker_size("10mx").error().message(), "invalid suffix: 'mx'");
  EXPECT_EQ(parse_docker_size("1..5k").error().message(),
            "strconv.ParseFloat: parsing \"1..5\": invalid syntax");
  EXPECT_EQ(parse_docker_size("99999999p").error().message(), "invalid size: '99999999p'");
  EXPECT_EQ(parse_docker_size("10m").value(), 10'000'000);
}

TEST(ParseUnsigned, DigitsOnlyWithinTheRange) {
  EXPECT_EQ(*parse_unsigned<uint64_t>("0", "n"), 0u);
  EXPECT_EQ(*parse_unsigned<uint64_t>("18446744073709551615", "n"), UINT64_MAX);
  EXPECT_EQ(*parse_unsigned<uint16_t>("65535", "w", 1, 65535), 65535);
  EXPECT_EQ(*parse_unsigned<uint32_t>("007", "uid"), 7u);
}

TEST(ParseUnsigned, RefusesSignsJunkOverflowAndOutOfRangeNamingTheValue) {
  for (auto bad : {"", "-1", "+1", " 1", "1 ", "1.0", "0x10", "12a", "18446744073709551616",
                   "99999999999999999999999"}) {
    auto result = parse_unsigned<uint64_t>(bad, "query parameter tail");
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_EQ(
        result.error().message(),
        fmt::format("query parameter tail must be a whole number from 0 to 18446744073709551615, not \"{}\"",
                    bad));
  }
  EXPECT_FALSE(parse_unsigned<uint16_t>("0", "w", 1, 65535));
  EXPECT_FALSE(parse_unsigned<uint16_t>("65536", "w", 1, 65535));
  // The type's own range bounds it even when the caller gives none: no silent wrap to 0.
  EXPECT_FALSE(parse_unsigned<uint8_t>("256", "byte"));
  EXPECT_EQ(parse_unsigned<uint16_t>("-1", "h", 1, 65535).error().message(),
            "h must be a whole number from 1 to 65535, not \"-1\"");
}

TEST(ParseDuration, BareSecondsAndUnits) {
  using std::chrono::milliseconds;
  constexpr milliseconds kDay(86400 * 1000);
  EXPECT_EQ(*parse_duration("10", "t", kDay), milliseconds(10000));
  EXPECT_EQ(*parse_duration("0", "t", kDay), milliseconds(0));
  EXPECT_EQ(*parse_duration("500ms", "t", kDay), milliseconds(500));
  EXPECT_EQ(*parse_duration("10s", "t", kDay), milliseconds(10000));
  EXPECT_EQ(*parse_duration("2m", "t", kDay), milliseconds(120000));
  EXPECT_EQ(*parse_duration("1H", "t", kDay), milliseconds(3600000));
  EXPECT_EQ(*parse_duration("86400", "t", kDay), kDay);
}

TEST(ParseDuration, RefusesNegativeFractionalUnknownAndTooLong) {
  constexpr std::chrono::milliseconds kDay(86400 * 1000);
  for (auto bad : {"", "-1", "-1s", "1.5", "s", "10 s", "10d", "86401", "1441m", "99999999999999999999h"}) {
    auto result = parse_duration(bad, "query parameter t", kDay);
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_TRUE(result.error().message().starts_with("query parameter t must be a duration")) << bad;
    EXPECT_NE(result.error().message().find(fmt::format("\"{}\"", bad)), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace kiln

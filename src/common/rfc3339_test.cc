#include "common/rfc3339.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

constexpr std::time_t kCreated = 1700000000;  // 2023-11-14T22:13:20Z

TEST(Rfc3339Test, ParsesFractionsAndZoneOffsets) {
  // Image configs carry nanoseconds and sometimes offsets.
  EXPECT_EQ(parse_rfc3339("2023-11-14T22:13:20Z"), kCreated);
  EXPECT_EQ(parse_rfc3339("2023-11-14T22:13:20.123456789Z"), kCreated);
  EXPECT_EQ(parse_rfc3339("2023-11-15T00:13:20+02:00"), kCreated);
  EXPECT_EQ(parse_rfc3339("2023-11-14T21:13:20-01:00"), kCreated);
  EXPECT_FALSE(parse_rfc3339("2023-11-14T22:13:20"));
  EXPECT_FALSE(parse_rfc3339("2023-11-14T22:13:20.Z"));
  EXPECT_FALSE(parse_rfc3339("yesterday"));
}

TEST(Rfc3339Test, FormatsInEachPrecisionAndRoundTrips) {
  auto time = std::chrono::system_clock::from_time_t(kCreated) + std::chrono::nanoseconds(123456789);
  EXPECT_EQ(format_rfc3339(time), "2023-11-14T22:13:20Z");
  EXPECT_EQ(format_rfc3339(time, TimePrecision::kMillis), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(format_rfc3339(time, TimePrecision::kNanos), "2023-11-14T22:13:20.123456789Z");
  EXPECT_EQ(parse_rfc3339(format_rfc3339(time, TimePrecision::kNanos)), kCreated);
  EXPECT_TRUE(parse_rfc3339(now_rfc3339(TimePrecision::kMillis)));
}

TEST(Rfc3339Test, TrimmedNanosAreGosRfc3339Nano) {
  auto whole = std::chrono::system_clock::from_time_t(kCreated);
  EXPECT_EQ(format_rfc3339(whole, TimePrecision::kNanosTrimmed), "2023-11-14T22:13:20Z");
  EXPECT_EQ(format_rfc3339(whole + std::chrono::milliseconds(120), TimePrecision::kNanosTrimmed),
            "2023-11-14T22:13:20.12Z");
  EXPECT_EQ(format_rfc3339(whole + std::chrono::nanoseconds(1), TimePrecision::kNanosTrimmed),
            "2023-11-14T22:13:20.000000001Z");
}

TEST(Rfc3339Test, ParseTimeKeepsTheFraction) {
  using std::chrono::nanoseconds;
  auto whole = std::chrono::system_clock::from_time_t(kCreated);
  EXPECT_EQ(parse_rfc3339_time("2023-11-14T22:13:20Z"), whole);
  EXPECT_EQ(parse_rfc3339_time("2023-11-14T22:13:20.5Z"), whole + nanoseconds(500'000'000));
  EXPECT_EQ(parse_rfc3339_time("2023-11-14T22:13:20.000000001Z"), whole + nanoseconds(1));
  EXPECT_EQ(parse_rfc3339_time("2023-11-14T22:13:20.1234567891Z"), whole + nanoseconds(123456789));
  EXPECT_EQ(parse_rfc3339_time("2023-11-15T00:13:20.25+02:00"), whole + nanoseconds(250'000'000));
  auto time = whole + nanoseconds(987654321);
  EXPECT_EQ(parse_rfc3339_time(format_rfc3339(time, TimePrecision::kNanosTrimmed)), time);
  EXPECT_FALSE(parse_rfc3339_time("2023-11-14T22:13:20.Z"));
  EXPECT_FALSE(parse_rfc3339_time("soon"));
}

}  // namespace
}  // namespace kiln

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

}  // namespace
}  // namespace kiln

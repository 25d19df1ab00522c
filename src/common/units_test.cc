#include "common/units.h"

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

}  // namespace
}  // namespace kiln

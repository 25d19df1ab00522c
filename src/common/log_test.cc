#include "common/log.h"

#include <gtest/gtest.h>

#include "common/json.h"

namespace kiln::log {
namespace {

TEST(Log, TextLinesQuoteOnlyWhenNeeded) {
  std::string line = format_line(Level::kInfo, Format::kText, "vm started",
                                 {{"vm", "web"}, {"reason", "user asked"}}, "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(line, "2026-01-01T00:00:00.000Z info  vm started vm=web reason=\"user asked\"");
}

TEST(Log, JsonLinesAreValidJson) {
  std::string line = format_line(Level::kError, Format::kJson, "boot failed", {{"vm", "a\"b"}, {"cpus", 2}},
                                 "2026-01-01T00:00:00.000Z");
  auto parsed = parse_json(line);
  ASSERT_TRUE(parsed);
  EXPECT_EQ((*parsed)["level"], "error");
  EXPECT_EQ((*parsed)["msg"], "boot failed");
  EXPECT_EQ((*parsed)["vm"], "a\"b");
  EXPECT_EQ((*parsed)["cpus"], "2");
}

TEST(Log, LevelNames) {
  EXPECT_TRUE(set_level_by_name("warn"));
  EXPECT_EQ(level(), Level::kWarn);
  EXPECT_FALSE(set_level_by_name("loud"));
  set_level(Level::kInfo);
}

}  // namespace
}  // namespace kiln::log

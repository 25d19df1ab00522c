#include "agent/output_replay.h"

#include <gtest/gtest.h>

namespace kiln::agent {
namespace {

TEST(OutputReplay, KeepsTheLastWindowByAbsoluteOffset) {
  OutputReplay replay;
  replay.record("hello ");
  replay.record("world\n");
  EXPECT_EQ(replay.end(), 12U);
  EXPECT_EQ(replay.since(0), "hello world\n");
  EXPECT_EQ(replay.since(6), "world\n");
  EXPECT_EQ(replay.since(12), "");
  EXPECT_EQ(replay.since(99), "");
  // Past the window only the newest bytes are kept; an older offset gets what there is.
  std::string big(OutputReplay::kKeptBytes, 'x');
  replay.record(big);
  replay.record("tail");
  EXPECT_EQ(replay.end(), 12U + big.size() + 4);
  EXPECT_EQ(replay.since(0).size(), OutputReplay::kKeptBytes);
  EXPECT_TRUE(replay.since(0).ends_with("xtail"));
  EXPECT_EQ(replay.since(replay.end() - 4), "tail");
}

}  // namespace
}  // namespace kiln::agent

#include "daemon/containers/signals.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace kiln::daemon::containers {
namespace {

TEST(ParseSignal, DockersSpellings) {
  EXPECT_EQ(parse_signal("SIGTERM").value(), SIGTERM);
  EXPECT_EQ(parse_signal("term").value(), SIGTERM);
  EXPECT_EQ(parse_signal("KILL").value(), SIGKILL);
  EXPECT_EQ(parse_signal("9").value(), 9);
  EXPECT_EQ(parse_signal("SIGUSR1").value(), SIGUSR1);
  EXPECT_EQ(parse_signal("SIGRTMIN+3").value(), SIGRTMIN + 3);
  EXPECT_EQ(parse_signal("RTMAX-1").value(), SIGRTMAX - 1);
}

TEST(ParseSignal, RefusesOthersInDockerdsWords) {
  for (const char* bad : {"", "SIGFLY", "0", "65", "-1", "RTMIN+99", "SIG"}) {
    auto parsed = parse_signal(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().message(), std::string("Invalid signal: ") + bad);
  }
}

}  // namespace
}  // namespace kiln::daemon::containers

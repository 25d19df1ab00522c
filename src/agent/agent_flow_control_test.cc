// Credit-based flow control end to end: a fast producer with a stalled consumer stays bounded by the window
// in both directions, and everything still arrives once the consumer catches up.
#include <gtest/gtest.h>
#include <signal.h>

#include "agent/agent_test_support.h"

namespace kiln::agent {
namespace {

constexpr auto kTimeout = std::chrono::seconds(30);

class AgentFlowControl : public testing::ConnectedAgentTest {
 protected:
  // Pumps until `done()`; fails the test at the deadline.
  template <typename Done>
  void pump_until(Done done) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!done()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "condition not reached";
      auto pumped = connection_->pump(std::chrono::milliseconds(100));
      ASSERT_TRUE(pumped.has_value()) << pumped.error().message();
    }
  }
};

TEST_F(AgentFlowControl, StalledReaderHoldsExactlyOneWindowOfOutput) {
  // "done" can reach stderr only after all 8 MiB went into stdout.
  auto id = connection_->start_process({.argv = {"sh", "-c", "head -c 8388608 /dev/zero; echo done >&2"}});
  ASSERT_TRUE(id.has_value()) << id.error().message();
  pump_until(
      [&] { return connection_->pending_output(*id, OutputStream::kStdout).size() >= kInitialWindow; });
  // Several round trips give the agent every chance to overrun; the client would flag any byte beyond the
  // window as a protocol error, and the producer must still be blocked on its pipe.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(connection_->ping(kTimeout).has_value());
  EXPECT_EQ(connection_->pending_output(*id, OutputStream::kStdout).size(), kInitialWindow);
  EXPECT_EQ(connection_->pending_output(*id, OutputStream::kStderr), "");
  EXPECT_FALSE(connection_->exit_status(*id).has_value());

  auto out = testing::memory_file();
  auto err = testing::memory_file();
  ASSERT_TRUE(out.has_value() && err.has_value());
  auto status = attach_process(*connection_, *id, {.stdout_fd = out->get(), .stderr_fd = err->get()});
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::exited(0));
  auto text = testing::contents(out->get());
  ASSERT_EQ(text->size(), 8u << 20);
  EXPECT_EQ(text->find_first_not_of('\0'), std::string::npos);
  EXPECT_EQ(*testing::contents(err->get()), "done\n");
}

TEST_F(AgentFlowControl, ProcessNotReadingStdinBoundsWhatTheHostMaySend) {
  auto id = connection_->start_process({.argv = {"sleep", "100"}});
  ASSERT_TRUE(id.has_value()) << id.error().message();
  std::string chunk(64 * 1024, 'x');
  size_t accepted = 0;
  for (int round = 0; round < 1000; ++round) {
    auto taken = connection_->write_stdin(*id, chunk);
    ASSERT_TRUE(taken.has_value()) << taken.error().message();
    accepted += *taken;
    if (*taken == 0) {
      ASSERT_TRUE(connection_->ping(kTimeout).has_value());  // lets any pending credit arrive
      if (connection_->stdin_credit(*id) == 0) break;
    }
  }
  // One window in the agent's buffer plus what the pipe holds (64 KiB by default); never megabytes.
  EXPECT_GE(accepted, kInitialWindow);
  EXPECT_LE(accepted, kInitialWindow + 256 * 1024);
  EXPECT_EQ(connection_->stdin_credit(*id), 0u);
  ASSERT_TRUE(connection_->send_signal(*id, SIGKILL).has_value());
  auto status = attach_process(*connection_, *id, {});
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::signaled(SIGKILL));
}

}  // namespace
}  // namespace kiln::agent

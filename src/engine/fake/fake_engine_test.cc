// The FakeEngine is only useful if it behaves like an engine: these pin the parts its users rely on
// (adoption, exit notification, an agent that speaks the real protocol and freezes while its VM is paused).
#include "engine/fake/fake_engine.h"

#include <gtest/gtest.h>
#include <poll.h>

#include "agent/client/agent_connection.h"
#include "common/temp_dir.h"

namespace kiln::engine::fake {
namespace {

using namespace std::chrono_literals;

class FakeEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>(TempDir::create("fake-engine-test-").value()); }
  VmSpec spec() const { return {.name = "vm", .runtime_dir = dir_->path(), .die_with_launcher = false}; }

  std::unique_ptr<TempDir> dir_;
  FakeEngine engine_;
};

bool readable(int fd) {
  pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
  return ::poll(&pfd, 1, 0) == 1;
}

TEST_F(FakeEngineTest, AgentSpeaksTheProtocolAndFreezesWhilePaused) {
  auto vm = engine_.launch(spec()).value();
  auto connection = agent::AgentConnection::connect(vm->connect_agent().value(), 10s);
  ASSERT_TRUE(connection) << connection.error().message();
  EXPECT_TRUE((*connection)->has_capability("hostname"));
  ASSERT_TRUE((*connection)->set_hostname("web", 10s));
  ASSERT_TRUE(vm->pause());
  EXPECT_EQ(vm->run_state().value(), VmRunState::kPaused);
  auto frozen = (*connection)->ping(200ms);
  ASSERT_FALSE(frozen);
  EXPECT_EQ(frozen.error().category(), ErrorCategory::kTimeout);
  ASSERT_TRUE(vm->resume());
  EXPECT_TRUE((*connection)->ping(10s));
  auto machine = engine_.machine(vm->monitor_pid());
  ASSERT_TRUE(machine);
  EXPECT_EQ(machine->requests(), (std::vector<std::string>{"HELLO", "SET_HOSTNAME web"}));
}

TEST_F(FakeEngineTest, ScriptedFailuresReachTheHost) {
  engine_.set_script(
      {.reactions = {{agent::MessageType::kMount,
                      AgentReaction::fail(Error(ErrorCategory::kPermissionDenied, "mount: not allowed"))}}});
  auto vm = engine_.launch(spec()).value();
  auto connection = agent::AgentConnection::connect(vm->connect_agent().value(), 10s).value();
  auto mounted = connection->mount({.source = "tag", .target = "/mnt", .fstype = "9p"}, 10s);
  ASSERT_FALSE(mounted);
  EXPECT_EQ(mounted.error().category(), ErrorCategory::kPermissionDenied);
  EXPECT_NE(mounted.error().message().find("mount: not allowed"), std::string::npos);
}

TEST_F(FakeEngineTest, ShutdownPowersOffAndTheExitIsVisible) {
  auto vm = engine_.launch(spec()).value();
  EXPECT_FALSE(readable(vm->exit_fd()));
  auto connection = agent::AgentConnection::connect(vm->connect_agent().value(), 10s).value();
  ASSERT_TRUE(connection->shutdown(false, 10s));
  auto status = vm->wait_for_exit(10s).value();
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->success());
  EXPECT_TRUE(readable(vm->exit_fd()));
  EXPECT_EQ(vm->exit_reason(), kGuestPoweredOff);
  EXPECT_EQ(vm->run_state().value(), VmRunState::kExited);
  EXPECT_EQ(vm->connect_agent().error().category(), ErrorCategory::kUnavailable);
}

TEST_F(FakeEngineTest, AdoptsOnlyARunningMonitorOfTheSameVm) {
  auto vm = engine_.launch(spec()).value();
  pid_t pid = vm->monitor_pid();
  vm->release();
  vm.reset();
  EXPECT_EQ(engine_.running_machines(), 1);  // released, not killed
  VmSpec other = spec();
  other.runtime_dir = "/elsewhere";
  EXPECT_EQ(engine_.adopt(other, pid).error().category(), ErrorCategory::kNotFound);
  auto adopted = engine_.adopt(spec(), pid);
  ASSERT_TRUE(adopted) << adopted.error().message();
  ASSERT_TRUE((*adopted)->kill());
  EXPECT_EQ((*adopted)->exit_reason(), "the VM's monitor killed by signal 9 (Killed)");
  EXPECT_EQ(engine_.adopt(spec(), pid).error().category(), ErrorCategory::kNotFound);
}

TEST_F(FakeEngineTest, ALauncherBoundVmDiesWithItsHandle) {
  VmSpec bound = spec();
  bound.die_with_launcher = true;
  auto vm = engine_.launch(bound).value();
  auto machine = engine_.machine(vm->monitor_pid());
  vm.reset();
  EXPECT_TRUE(machine->exited());
}

}  // namespace
}  // namespace kiln::engine::fake

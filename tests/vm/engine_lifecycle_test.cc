// The QEMU engine's lifecycle against real VMs (TCG here): pause/resume, graceful stop through the agent,
// and the kill fallback. Uses the guest kit the build produced (bin/kiln-agent, guest/kernel).
#include <gtest/gtest.h>

#include "agent/client/agent_connection.h"
#include "common/temp_dir.h"
#include "engine/engine_factory.h"
#include "engine/graceful_stop.h"
#include "guest/guest_kit.h"

namespace kiln::engine {
namespace {

using namespace std::chrono_literals;

class EngineLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("kiln-engine-test-");
    ASSERT_TRUE(dir) << dir.error().message();
    runtime_dir_.emplace(std::move(*dir));
    auto kit = guest::resolve_guest_kit({});
    ASSERT_TRUE(kit) << kit.error().message();
    auto engine = make_engine({.name = "qemu"});
    ASSERT_TRUE(engine) << engine.error().message();
    engine_ = std::move(*engine);
    auto vm = engine_->launch({.name = "lifecycle",
                               .memory_mib = 256,
                               .kernel = kit->kernel,
                               .initrd = kit->initramfs,
                               .runtime_dir = runtime_dir_->path()});
    ASSERT_TRUE(vm) << vm.error().message();
    vm_ = std::move(*vm);
  }

  std::unique_ptr<agent::AgentConnection> connect_agent() {
    auto channel = vm_->connect_agent();
    EXPECT_TRUE(channel) << channel.error().message();
    if (!channel) return nullptr;
    auto connection = agent::AgentConnection::connect(std::move(*channel), 180s);
    EXPECT_TRUE(connection) << connection.error().message();
    return connection ? std::move(*connection) : nullptr;
  }

  std::optional<TempDir> runtime_dir_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<VmInstance> vm_;
};

TEST_F(EngineLifecycle, PauseHoldsTheGuestAndResumeContinuesIt) {
  auto agent = connect_agent();
  ASSERT_TRUE(agent);
  ASSERT_TRUE(vm_->pause());
  EXPECT_EQ(*vm_->run_state(), VmRunState::kPaused);
  // A paused guest cannot answer.
  auto ping = agent->ping(500ms);
  ASSERT_FALSE(ping);
  EXPECT_EQ(ping.error().category(), ErrorCategory::kTimeout);
  ASSERT_TRUE(vm_->resume());
  EXPECT_EQ(*vm_->run_state(), VmRunState::kRunning);
  EXPECT_TRUE(agent->ping(60s));
}

TEST_F(EngineLifecycle, GracefulStopGoesThroughTheAgent) {
  auto agent = connect_agent();
  ASSERT_TRUE(agent);
  auto outcome = stop_gracefully(*vm_, agent.get(), 60s);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, StopOutcome::kGraceful);
  EXPECT_EQ(*vm_->run_state(), VmRunState::kExited);
}

TEST_F(EngineLifecycle, StopWithoutAnAgentFallsBackToKill) {
  auto outcome = stop_gracefully(*vm_, nullptr, 100ms);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, StopOutcome::kKilled);
  EXPECT_EQ(*vm_->run_state(), VmRunState::kExited);
}

}  // namespace
}  // namespace kiln::engine

// The warm pool on the fake engine: container starts take idle clones forked ahead of need, the pool refills
// in the background, shrinks under memory pressure, and neither a kilnd stop nor a killed kilnd leaves a
// clone running.
#include "daemon/warm_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "common/temp_dir.h"
#include "daemon/clone_warm_up.h"
#include "daemon/containers/test_support.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;
using containers::NewContainer;
using containers::WaitCondition;
using namespace std::chrono_literals;

// How long a test waits for the refill thread; never reached when the code is right.
constexpr auto kRefillWait = 20s;

template <typename Predicate>
bool eventually(Predicate predicate) {
  auto deadline = std::chrono::steady_clock::now() + kRefillWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return predicate();
}

class WarmPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { make_stack({.check_interval = 20ms}); }

  void make_stack(WarmPoolConfig config) {
    stack_.reset();
    config.available_mib = [this] { return available_mib_.load(); };
    auto stack = containers::testing::ContainerStack::create(true, 2, std::move(config));
    ASSERT_TRUE(stack) << stack.error().message();
    stack_ = std::move(*stack);
  }

  // Creates and runs `echo hi` to its end; returns the container's VM as it last started.
  VmRecord run(std::vector<containers::MountPoint> mounts = {}) {
    auto vm =
        stack_->run_echo([&](NewContainer& request) { request.host_config.mounts = std::move(mounts); });
    EXPECT_TRUE(vm) << vm.error().message();
    return vm.value_or(VmRecord{});
  }

  // The fake machine whose runtime directory is now `dir`.
  std::shared_ptr<engine::fake::FakeMachine> machine_in(const std::string& dir) {
    for (pid_t pid = 1'000'000; pid < 1'000'000 + 200; ++pid) {
      auto machine = stack_->engine().machine(pid);
      if (machine && machine->runtime_dir() == dir) return machine;
    }
    return nullptr;
  }

  size_t idle(const std::string& key) { return stack_->pool()->stats(key).idle; }

  std::string dir_for_warm_up() {
    if (!warm_up_dir_) warm_up_dir_ = std::make_unique<TempDir>(TempDir::create("warm-up-").value());
    return warm_up_dir_->path() + "/scratch";
  }

  std::unique_ptr<TempDir> warm_up_dir_;

  std::atomic<uint64_t> available_mib_ = 1 << 20;
  std::unique_ptr<containers::testing::ContainerStack> stack_;
};

TEST_F(WarmPoolTest, AStartTakesAnIdleCloneThatBecomesTheContainersVm) {
  VmRecord first = run();
  ASSERT_EQ(first.start_mode, "fork");
  EXPECT_FALSE(first.start_pooled);  // the pool learns the shape from this start
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  int forks = stack_->engine().forks();

  VmRecord second = run();
  EXPECT_EQ(second.start_mode, "fork");
  EXPECT_TRUE(second.start_pooled);
  EXPECT_EQ(second.template_key, first.template_key);
  EXPECT_EQ(stack_->engine().template_builds(), 1);
  auto has_step = [](const VmRecord& vm, std::string_view step) {
    return std::any_of(vm.start_timings.begin(), vm.start_timings.end(),
                       [&](const auto& entry) { return entry.first == step; });
  };
  EXPECT_TRUE(has_step(second, "assign"));
  EXPECT_TRUE(has_step(second, "clone-init"));
  EXPECT_FALSE(has_step(second, "fork"));  // forked before the start: its fork steps are pool-fork...

  // The clone's directory became the VM's, and its agent was told who it is in one message, after the
  // HELLO the pool did.
  auto machine = machine_in(stack_->vms().runtime_dir(second.id));
  ASSERT_TRUE(machine) << "no machine in the VM's runtime dir";
  EXPECT_TRUE(machine->spec().runtime_dir.starts_with(stack_->dir() + "/run/pool/"));
  auto requests = machine->requests();
  ASSERT_GE(requests.size(), 2U);
  EXPECT_EQ(requests[0], "HELLO");
  EXPECT_TRUE(requests[1].starts_with("CLONE_INIT " + second.name)) << requests[1];
  EXPECT_EQ(std::count(requests.begin(), requests.end(), "HELLO"), 1);
  // Its slots held placeholders until the start put the container's image and layer in them.
  std::vector<std::string> expected = {
      fmt::format("swap 0 {} ro", second.image_rootfs),
      fmt::format("swap 1 {} rw", stack_->vms().container_layer_path(second.id))};
  EXPECT_EQ(machine->changes(), expected);

  // The pool forks a replacement in the background.
  EXPECT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  EXPECT_EQ(stack_->engine().forks(), forks + 1);
  // Idle clones are no VMs.
  auto vms = stack_->vms().list({});
  ASSERT_TRUE(vms);
  EXPECT_EQ(vms->size(), 2U);
}

TEST_F(WarmPoolTest, ATakenCloneGetsTheContainersBindMountsInItsMovedShare) {
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  std::string data = stack_->dir() + "/data";
  fs::create_directories(data);
  VmRecord bound = run({{.type = containers::MountPoint::Type::kBind,
                         .source = data,
                         .destination = "/data",
                         .read_only = true}});
  ASSERT_TRUE(bound.start_pooled);
  auto machine = machine_in(stack_->vms().runtime_dir(bound.id));
  ASSERT_TRUE(machine);
  auto changes = machine->changes();
  ASSERT_EQ(changes.size(), 3U);
  EXPECT_EQ(changes[2], fmt::format("share 0 0={}:ro", data));
  // The share's directory moved with the clone: its mount point is in the VM's runtime directory.
  auto shares = machine->shares();
  ASSERT_EQ(shares.size(), 1U);
  EXPECT_EQ(shares[0].host_path, stack_->vms().container_share_dir(bound.id));
}

TEST_F(WarmPoolTest, AFailedHandOverFallsBackToAForkOfItsOwn) {
  // Every machine from now on fails to take a disk: the pool's clones too (a direct fork swaps nothing).
  engine::fake::FakeScript script;
  script.swap_error = Error::unavailable("the disk went away");
  stack_->engine().set_script(script);
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  VmRecord next = run();
  EXPECT_EQ(next.start_mode, "fork");
  EXPECT_FALSE(next.start_pooled);
  EXPECT_EQ(next.state, VmState::kStopped) << next.state_reason;  // it ran `echo hi` to its end
  // The clone that failed is gone, its directory with it; the VM's own directory is the fork's.
  EXPECT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  size_t pool_dirs = 0;
  for (const auto& entry : fs::directory_iterator(stack_->dir() + "/run/pool")) {
    (void)entry;
    ++pool_dirs;
  }
  EXPECT_EQ(pool_dirs, 2U);
}

TEST_F(WarmPoolTest, AWarmUpThatCannotMakeItsScratchDisksLeavesClonesUnwarmedButPooled) {
  auto warm_up = std::make_shared<CloneWarmUp>(dir_for_warm_up(), "/nonexistent/busybox");
  make_stack({.check_interval = 20ms,
              .warm_up = [warm_up](const engine::VmSpec& spec, engine::VmInstance& vm, agent::AgentHub& hub) {
                return warm_up->run(spec, vm, hub);
              }});
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  VmRecord next = run();
  EXPECT_TRUE(next.start_pooled);
  auto machine = machine_in(stack_->vms().runtime_dir(next.id));
  ASSERT_TRUE(machine);
  // No warm-up swaps before the start's own, and no warm-up step.
  EXPECT_EQ(machine->changes().size(), 2U);
  EXPECT_TRUE(std::none_of(next.start_timings.begin(), next.start_timings.end(),
                           [](const auto& step) { return step.first == "pool-warm-up"; }));
}

TEST_F(WarmPoolTest, StoppingThePoolKillsItsIdleClones) {
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  // A second pool of the same shape (an idle clone's spec is one), stopped as kilnd's exit stops its pool.
  std::shared_ptr<engine::fake::FakeMachine> clone;
  for (const auto& entry : fs::directory_iterator(stack_->dir() + "/run/pool"))
    clone = clone ? clone : machine_in(entry.path().string());
  ASSERT_TRUE(clone);
  int running = stack_->engine().running_machines();
  {
    WarmPool own({.dir = stack_->dir() + "/run/pool2", .size = 2, .available_mib = [] { return 1U << 20; }},
                 stack_->engine(), *stack_->templates());
    own.want(first.template_key, clone->spec());
    ASSERT_TRUE(eventually([&] { return own.stats(first.template_key).idle == 2; }));
    EXPECT_EQ(stack_->engine().running_machines(), running + 2);
    EXPECT_EQ(std::distance(fs::directory_iterator(stack_->dir() + "/run/pool2"), fs::directory_iterator()),
              2);
  }
  EXPECT_EQ(stack_->engine().running_machines(), running);
  EXPECT_TRUE(fs::is_empty(stack_->dir() + "/run/pool2"));
}

TEST_F(WarmPoolTest, ALeftoverCloneOfAKilledKilndIsKilledAtStart) {
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  // What a kill -9 of kilnd leaves: a clone's directory with its monitor's pid, the monitor running. A
  // fresh pool over the same directory (the next kilnd) kills it; a pid file naming another process is
  // left alone.
  std::string leftover = stack_->dir() + "/run/pool/leftover";
  fs::create_directories(leftover);
  auto spec = engine::VmSpec{.name = "leftover", .runtime_dir = leftover, .die_with_launcher = false};
  auto launched = stack_->engine().launch(spec);
  ASSERT_TRUE(launched) << launched.error().message();
  pid_t pid = (*launched)->monitor_pid();
  (*launched)->release();
  ASSERT_TRUE(write_file_atomic(leftover + "/" + std::string(kPoolPidFile), fmt::format("{}\n", pid)));
  std::string stranger = stack_->dir() + "/run/pool/stranger";
  fs::create_directories(stranger);
  ASSERT_TRUE(write_file_atomic(stranger + "/" + std::string(kPoolPidFile), "1\n"));

  WarmPool next({.dir = stack_->dir() + "/run/pool", .size = 0}, stack_->engine(), *stack_->templates());
  next.clear_leftovers();
  EXPECT_TRUE(stack_->engine().machine(pid)->exited());
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_FALSE(fs::exists(stranger));
}

TEST_F(WarmPoolTest, LowHostMemoryShrinksThePoolAndStopsItsRefill) {
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  available_mib_ = 10;  // below the floor
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 0; }));
  int forks = stack_->engine().forks();
  VmRecord forked = run();  // nothing idle: the start forks
  EXPECT_EQ(forked.start_mode, "fork");
  EXPECT_FALSE(forked.start_pooled);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(stack_->engine().forks(), forks + 1);  // and the pool forked none
  available_mib_ = 1 << 20;
  EXPECT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
}

TEST_F(WarmPoolTest, RemovingATemplateDrainsItsIdleClones) {
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  auto listed = stack_->vms().list_templates();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1U);
  EXPECT_EQ((*listed)[0].pooled, 2);
  int running = stack_->engine().running_machines();
  ASSERT_TRUE(stack_->vms().remove_template(first.template_key));
  EXPECT_EQ(idle(first.template_key), 0U);
  EXPECT_EQ(stack_->engine().running_machines(), running - 2);
  EXPECT_FALSE(fs::exists(stack_->dir() + "/root/templates/" + first.template_key));
}

TEST_F(WarmPoolTest, ADeadIdleCloneIsNotHandedOut) {
  VmRecord first = run();
  ASSERT_TRUE(eventually([&] { return idle(first.template_key) == 2; }));
  // Kill both idle clones behind the pool's back.
  for (const auto& entry : fs::directory_iterator(stack_->dir() + "/run/pool")) {
    if (auto machine = machine_in(entry.path().string())) machine->exit("killed", ExitStatus::signaled(9));
  }
  VmRecord next = run();
  EXPECT_EQ(next.start_mode, "fork");
  EXPECT_FALSE(next.start_pooled);
}

}  // namespace
}  // namespace kiln::daemon

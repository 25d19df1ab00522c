// VmManager's state machine on the FakeEngine: every transition, the conflicts, races on one VM, monitors
// that die at awkward moments and a kilnd restart, without booting anything. The manager runs its real code:
// its agent hub speaks the real protocol to the fake's in-process agent.
#include "daemon/vm_manager.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <latch>
#include <thread>

#include "common/json.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"
#include "daemon/vm_manager_fixture.h"
#include "engine/fake/fake_engine.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;
using agent::MessageType;
using engine::fake::AgentReaction;
using engine::fake::FakeMachine;
using engine::fake::FakeScript;
using namespace std::chrono_literals;

constexpr auto kGrace = 10s;
// How long a test waits for something the watcher thread does; never reached when the code is right.
constexpr auto kEventWait = 20s;

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

bool has_request(const FakeMachine& machine, std::string_view request) {
  for (const auto& seen : machine.requests()) {
    if (seen == request) return true;
  }
  return false;
}

class VmManagerTest : public testing::VmManagerFixture {
 protected:
  // A VM whose root disk is built from an empty directory: a 32 MiB mkfs.ext4, a few milliseconds.
  VmRecord create(const std::string& name, std::vector<SharedFolder> folders = {}) {
    auto vm = manager_->create_vm({.name = name,
                                   .disk_mib = 32,
                                   .source = {.kind = RootSource::Kind::kDirectory, .value = rootfs_},
                                   .folders = std::move(folders)});
    EXPECT_TRUE(vm) << vm.error().message();
    return vm.value_or(VmRecord{});
  }

  VmRecord inspect(const std::string& name) {
    auto vm = manager_->inspect(name);
    EXPECT_TRUE(vm) << vm.error().message();
    return vm.value_or(VmRecord{});
  }

  std::shared_ptr<FakeMachine> machine_of(const std::string& name) {
    auto machine = engine_.machine(static_cast<pid_t>(inspect(name).monitor_pid));
    EXPECT_TRUE(machine) << name << " has no monitor";
    return machine;
  }

  // Waits (on the event bus, no sleeping) for `action` on the VM `name` after event `after`.
  std::optional<Event> wait_for_event(const std::string& name, const std::string& action,
                                      uint64_t after = 0) {
    auto deadline = std::chrono::steady_clock::now() + kEventWait;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& event : events_.wait_after(after, 1s)) {
        after = event.seq;
        if (event.name == name && event.action == action) return event;
      }
    }
    return std::nullopt;
  }

  std::vector<std::string> actions_for(const std::string& name) {
    std::vector<std::string> actions;
    for (const auto& event : events_.wait_after(0, 0ms)) {
      if (event.name == name) actions.push_back(event.action);
    }
    return actions;
  }

  SharedFolder folder() {
    std::string host = dir_->path() + "/share";
    fs::create_directories(host);
    return {.host_path = host, .guest_path = "data"};
  }
};

void expect_conflict(const Result<VmRecord>& result, std::string_view message) {
  ASSERT_FALSE(result) << "expected: " << message;
  EXPECT_EQ(result.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(result.error().message(), message);
}

TEST_F(VmManagerTest, FullLifecycle) {
  VmRecord vm = create("web");
  EXPECT_EQ(vm.state, VmState::kStopped);
  EXPECT_TRUE(fs::exists(manager_->vm_dir(vm.id) + "/root.ext4"));

  auto started = manager_->start("web");
  ASSERT_TRUE(started) << started.error().message();
  EXPECT_EQ(started->state, VmState::kRunning);
  auto machine = machine_of("web");
  ASSERT_TRUE(machine);
  EXPECT_EQ(machine->spec().root_disk, 0);
  EXPECT_TRUE(has_request(*machine, "HELLO"));
  EXPECT_TRUE(has_request(*machine, "SET_HOSTNAME web"));

  auto paused = manager_->pause("web");
  ASSERT_TRUE(paused) << paused.error().message();
  EXPECT_EQ(paused->state, VmState::kPaused);
  EXPECT_EQ(machine->run_state(), engine::VmRunState::kPaused);

  auto resumed = manager_->resume("web");
  ASSERT_TRUE(resumed) << resumed.error().message();
  EXPECT_EQ(resumed->state, VmState::kRunning);
  EXPECT_EQ(machine->run_state(), engine::VmRunState::kRunning);
  EXPECT_TRUE(has_request(*machine, "SET_CLOCK"));  // its clock stood still while paused

  auto stopped = manager_->stop("web", kGrace);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, VmState::kStopped);
  EXPECT_EQ(stopped->state_reason, "");
  EXPECT_EQ(stopped->monitor_pid, 0);
  EXPECT_TRUE(has_request(*machine, "SHUTDOWN"));  // asked the guest, not killed
  EXPECT_TRUE(machine->exited());

  auto again = manager_->start("web");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->state, VmState::kRunning);
  EXPECT_NE(again->monitor_pid, vm.monitor_pid);
  auto second = machine_of("web");
  ASSERT_TRUE(second);
  EXPECT_NE(second, machine);

  auto killed = manager_->kill("web");
  ASSERT_TRUE(killed) << killed.error().message();
  EXPECT_EQ(killed->state, VmState::kStopped);
  EXPECT_EQ(killed->state_reason, "killed");
  EXPECT_TRUE(second->exited());
  EXPECT_FALSE(has_request(*second, "SHUTDOWN"));

  ASSERT_TRUE(manager_->remove("web", false));
  EXPECT_EQ(manager_->inspect("web").error().category(), ErrorCategory::kNotFound);
  EXPECT_FALSE(fs::exists(manager_->vm_dir(vm.id)));
  EXPECT_EQ(engine_.launches(), 2);
  EXPECT_EQ(engine_.running_machines(), 0);
  EXPECT_EQ(actions_for("web"), (std::vector<std::string>{"created", "started", "paused", "resumed",
                                                          "stopped", "started", "stopped", "deleted"}));
}

TEST_F(VmManagerTest, AVmSharesAtMostAsManyFoldersAsItHasDeviceSlotsFor) {
  std::vector<SharedFolder> folders;
  for (size_t i = 0; i <= kMaxSharedFolders; ++i) {
    SharedFolder shared = folder();
    shared.guest_path = fmt::format("/mnt/f{}", i);
    folders.push_back(shared);
  }
  auto too_many = manager_->create_vm({.name = "many",
                                       .disk_mib = 32,
                                       .source = {.kind = RootSource::Kind::kDirectory, .value = rootfs_},
                                       .folders = folders});
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_FALSE(manager_->inspect("many"));  // nothing half-made
  folders.pop_back();
  create("most", folders);
  SharedFolder one_more = folder();
  one_more.guest_path = "/mnt/more";
  auto refused = manager_->add_folder("most", one_more);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("already shares 5 folders"), std::string::npos)
      << refused.error().message();
}

TEST_F(VmManagerTest, InvalidTransitionsAreConflictsNamingTheState) {
  create("web");
  expect_conflict(manager_->pause("web"), "cannot pause VM web: it is stopped");
  expect_conflict(manager_->resume("web"), "cannot resume VM web: it is stopped");
  expect_conflict(manager_->kill("web"), "cannot kill VM web: it is stopped");
  expect_conflict(manager_->suspend("web"), "cannot suspend VM web: it is stopped");
  agent::ExecIo io;
  auto exec = manager_->exec("web", {.argv = {"true"}}, io);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(exec.error().message(), "cannot exec in VM web: it is stopped");

  ASSERT_TRUE(manager_->start("web"));
  expect_conflict(manager_->resume("web"), "cannot resume VM web: it is running");
  auto removed = manager_->remove("web", false);
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(removed.error().message(),
            "cannot remove VM web: it is running (stop it first or force the removal)");
  auto resized = manager_->update("web", {.cpus = 2});
  ASSERT_FALSE(resized);
  EXPECT_EQ(resized.error().category(), ErrorCategory::kFailedPrecondition);

  ASSERT_TRUE(manager_->pause("web"));
  expect_conflict(manager_->pause("web"), "cannot pause VM web: it is paused");
  // Nothing of this changed the VM.
  EXPECT_EQ(inspect("web").state, VmState::kPaused);
  EXPECT_EQ(engine_.launches(), 1);

  // Forced removal of a paused VM takes its monitor down too.
  auto machine = machine_of("web");
  ASSERT_TRUE(manager_->remove("web", true));
  EXPECT_TRUE(machine->exited());
}

TEST_F(VmManagerTest, StoppingAPausedVmShutsItDownGracefully) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  ASSERT_TRUE(manager_->pause("web"));
  auto machine = machine_of("web");
  // A paused guest cannot answer SHUTDOWN: unless it is resumed first, the stop ends in a kill at the grace.
  auto stopped = manager_->stop("web", 3s);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, VmState::kStopped);
  EXPECT_EQ(stopped->state_reason, "");
  EXPECT_TRUE(has_request(*machine, "SHUTDOWN"));
  EXPECT_EQ(machine->exit_reason(), engine::fake::kGuestPoweredOff);
}

TEST_F(VmManagerTest, AGuestThatIgnoresShutdownIsKilledAtTheEndOfTheGrace) {
  create("web");
  engine_.set_script({.reactions = {{MessageType::kShutdown, AgentReaction::ignore()}}});
  ASSERT_TRUE(manager_->start("web"));
  auto machine = machine_of("web");
  auto stopped = manager_->stop("web", 300ms);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, VmState::kStopped);
  EXPECT_EQ(stopped->state_reason, "killed after the stop timeout");
  EXPECT_TRUE(machine->exited());
}

TEST_F(VmManagerTest, RestartBootsAFreshMonitor) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  ASSERT_TRUE(manager_->pause("web"));
  auto first = machine_of("web");
  auto restarted = manager_->restart("web", kGrace);
  ASSERT_TRUE(restarted) << restarted.error().message();
  EXPECT_EQ(restarted->state, VmState::kRunning);
  EXPECT_TRUE(has_request(*first, "SHUTDOWN"));
  EXPECT_TRUE(first->exited());
  auto second = machine_of("web");
  ASSERT_TRUE(second);
  EXPECT_NE(second, first);
  EXPECT_EQ(engine_.running_machines(), 1);
  auto actions = actions_for("web");
  EXPECT_EQ(actions.back(), "restarted");
}

TEST_F(VmManagerTest, ConcurrentStartsBootOnce) {
  create("web");
  constexpr int kThreads = 4;
  std::latch ready(kThreads);
  std::atomic<int> succeeded = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      ready.arrive_and_wait();
      auto started = manager_->start("web");
      if (started && started->state == VmState::kRunning) ++succeeded;
    });
  }
  for (auto& thread : threads) thread.join();
  // Starting a running VM is not an error (as docker start), but only one of them booted it.
  EXPECT_EQ(succeeded, kThreads);
  EXPECT_EQ(engine_.launches(), 1);
  EXPECT_EQ(engine_.running_machines(), 1);
  auto actions = actions_for("web");
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "started"), 1);
}

TEST_F(VmManagerTest, StartRacingRemoveHasOneConsistentOutcome) {
  for (int round = 0; round < 8; ++round) {
    std::string name = "web" + std::to_string(round);
    VmRecord vm = create(name);
    std::latch ready(2);
    std::optional<Result<VmRecord>> started;
    std::optional<Result<void>> removed;
    std::thread starter([&] {
      ready.arrive_and_wait();
      started.emplace(manager_->start(name));
    });
    std::thread remover([&] {
      ready.arrive_and_wait();
      removed.emplace(manager_->remove(name, false));
    });
    starter.join();
    remover.join();
    if (*removed) {
      // The removal went first: the start found nothing, and nothing was booted for it.
      ASSERT_FALSE(*started);
      EXPECT_EQ(started->error().category(), ErrorCategory::kNotFound);
      EXPECT_EQ(manager_->inspect(name).error().category(), ErrorCategory::kNotFound);
      EXPECT_FALSE(fs::exists(manager_->vm_dir(vm.id)));
    } else {
      // The start went first: the removal was refused and the VM runs.
      ASSERT_TRUE(*started) << started->error().message();
      EXPECT_EQ(removed->error().category(), ErrorCategory::kFailedPrecondition);
      EXPECT_EQ(inspect(name).state, VmState::kRunning);
      ASSERT_TRUE(manager_->remove(name, true));
    }
    EXPECT_EQ(engine_.running_machines(), 0);
  }
}

TEST_F(VmManagerTest, ConcurrentRemovesHaveOneWinner) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  constexpr int kThreads = 4;
  std::latch ready(kThreads);
  std::atomic<int> removed = 0;
  std::atomic<int> not_found = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      ready.arrive_and_wait();
      auto result = manager_->remove("web", true);
      if (result)
        ++removed;
      else if (result.error().category() == ErrorCategory::kNotFound)
        ++not_found;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(removed, 1);
  EXPECT_EQ(not_found, kThreads - 1);
  EXPECT_EQ(engine_.running_machines(), 0);
}

TEST_F(VmManagerTest, StopRacingKillEndsStopped) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  std::latch ready(2);
  std::thread stopper([&] {
    ready.arrive_and_wait();
    EXPECT_TRUE(manager_->stop("web", kGrace));
  });
  std::thread killer([&] {
    ready.arrive_and_wait();
    auto killed = manager_->kill("web");
    // Second in line, the kill finds the VM stopped already.
    if (!killed) {
      EXPECT_EQ(killed.error().message(), "cannot kill VM web: it is stopped");
    }
  });
  stopper.join();
  killer.join();
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kStopped);
  EXPECT_EQ(vm.monitor_pid, 0);
  EXPECT_EQ(engine_.running_machines(), 0);
}

TEST_F(VmManagerTest, LaunchFailureLeavesTheVmInErrorAndStartable) {
  create("web");
  engine_.set_script({.launch_error = Error::unavailable("QEMU failed to start: no memory")});
  auto started = manager_->start("web");
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(started.error().message(), "VM web failed to start: QEMU failed to start: no memory");
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kError);
  EXPECT_EQ(vm.state_reason, "QEMU failed to start: no memory");
  EXPECT_EQ(vm.monitor_pid, 0);

  engine_.set_script({});
  auto again = manager_->start("web");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->state, VmState::kRunning);
}

TEST_F(VmManagerTest, MonitorDyingBeforeTheAgentAnswersFailsTheStart) {
  create("web");
  engine_.set_script(
      {.reactions = {{MessageType::kHello, AgentReaction::monitor_exits("the guest kernel panicked")}}});
  auto started = manager_->start("web");
  ASSERT_FALSE(started);
  EXPECT_TRUE(contains(started.error().message(), "VM web failed to start")) << started.error().message();
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kError);
  EXPECT_TRUE(contains(vm.state_reason, "the guest kernel panicked")) << vm.state_reason;
  EXPECT_EQ(vm.monitor_pid, 0);
  EXPECT_EQ(engine_.running_machines(), 0);
  auto actions = actions_for("web");
  EXPECT_EQ(actions.back(), "died");

  // Nothing half-made is left over: the next start is an ordinary one.
  engine_.set_script({});
  auto again = manager_->start("web");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->state, VmState::kRunning);
  EXPECT_EQ(again->state_reason, "");
}

TEST_F(VmManagerTest, MonitorDyingAfterHelloWhileMountingFailsTheStart) {
  create("web", {folder()});
  engine_.set_script(
      {.reactions = {{MessageType::kMount, AgentReaction::monitor_exits("the guest kernel panicked")}}});
  auto started = manager_->start("web");
  ASSERT_FALSE(started);
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kError);
  EXPECT_TRUE(contains(vm.state_reason, "the guest kernel panicked")) << vm.state_reason;
  EXPECT_EQ(vm.monitor_pid, 0);
  EXPECT_EQ(engine_.running_machines(), 0);
}

TEST_F(VmManagerTest, MonitorDyingRightAfterHelloIsNoticedByTheWatcher) {
  create("web");
  engine_.set_script({.reactions = {{MessageType::kSetHostname,
                                     AgentReaction::monitor_exits("the guest kernel panicked")}}});
  uint64_t before = events_.last_seq();
  // A hostname the guest did not take fails nothing; the watcher then finds the monitor gone.
  (void)manager_->start("web");
  ASSERT_TRUE(wait_for_event("web", "died", before));
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kStopped);
  EXPECT_EQ(vm.state_reason, "the guest kernel panicked");
  EXPECT_EQ(vm.monitor_pid, 0);
}

TEST_F(VmManagerTest, AFailedAgentRequestFailsTheStartAndTakesTheVmDown) {
  create("web", {folder()});
  engine_.set_script({.reactions = {{MessageType::kMount, AgentReaction::fail(Error::invalid_argument(
                                                              "mount: No such device"))}}});
  auto started = manager_->start("web");
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_TRUE(contains(started.error().message(), "mount: No such device")) << started.error().message();
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kError);
  EXPECT_TRUE(contains(vm.state_reason, "mount: No such device")) << vm.state_reason;
  EXPECT_EQ(engine_.running_machines(), 0);
}

TEST_F(VmManagerTest, AHostnameTheGuestRefusesIsNotFatal) {
  create("web");
  engine_.set_script({.reactions = {{MessageType::kSetHostname,
                                     AgentReaction::fail(Error::unsupported("no hostname here"))}}});
  auto started = manager_->start("web");
  ASSERT_TRUE(started) << started.error().message();
  EXPECT_EQ(started->state, VmState::kRunning);
}

TEST_F(VmManagerTest, AnAgentThatNeverAnswersTimesOut) {
  manager_.reset();
  config_.agent_timeout = 300ms;
  start_manager();
  create("web");
  engine_.set_script({.reactions = {{MessageType::kHello, AgentReaction::ignore()}}});
  auto started = manager_->start("web");
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().category(), ErrorCategory::kTimeout) << started.error().message();
  EXPECT_EQ(inspect("web").state, VmState::kError);
  EXPECT_EQ(engine_.running_machines(), 0);  // killed, not left running without an agent
}

TEST_F(VmManagerTest, GuestPowerOffIsRecordedWithItsReason) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  uint64_t before = events_.last_seq();
  machine_of("web")->exit(engine::fake::kGuestPoweredOff);
  auto died = wait_for_event("web", "died", before);
  ASSERT_TRUE(died);
  EXPECT_EQ(died->attributes.value("reason", ""), "the guest powered off");
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kStopped);
  EXPECT_EQ(vm.state_reason, "the guest powered off");
  EXPECT_EQ(vm.monitor_pid, 0);
  EXPECT_FALSE(vm.finished_at.empty());

  auto again = manager_->start("web");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->state, VmState::kRunning);
}

TEST_F(VmManagerTest, ExecRunsThroughTheAgent) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  auto [ours, theirs] = make_socket_pair().value();
  agent::ExecIo io{.client = std::move(theirs), .tty = true, .attach_stdin = false};
  auto handle = manager_->exec("web", {.argv = {"echo", "hello", "from", "the", "guest"}, .tty = true}, io);
  ASSERT_TRUE(handle) << handle.error().message();
  auto status = handle->wait(kEventWait);
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_EQ(status->code(), 0);
  auto output = read_to_end(ours.get());
  ASSERT_TRUE(output) << output.error().message();
  EXPECT_EQ(*output, "hello from the guest\n");

  agent::ExecIo missing_io;
  auto missing = manager_->exec("web", {.argv = {"no-such-program"}}, missing_io);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
}

TEST_F(VmManagerTest, ExecReconnectsToAnAgentThatDroppedItsChannel) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  auto machine = machine_of("web");
  machine->drop_agent_channel();
  // The hub notices the lost channel on its own thread; exec reconnects when it finds the hub dead, or
  // fails with kUnavailable if it raced the drop, after which a retry reconnects.
  Result<agent::ExecHandle> handle = Error::internal("not run");
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto [ours, theirs] = make_socket_pair().value();
    agent::ExecIo io{.client = std::move(theirs), .tty = true};
    handle = manager_->exec("web", {.argv = {"echo", "back"}, .tty = true}, io);
    if (handle || handle.error().category() != ErrorCategory::kUnavailable) break;
  }
  ASSERT_TRUE(handle) << handle.error().message();
  EXPECT_TRUE(handle->wait(kEventWait));
  EXPECT_EQ(machine->agent_connections(), 2);
  EXPECT_EQ(inspect("web").state, VmState::kRunning);
}

TEST_F(VmManagerTest, SuspendAndRestore) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  auto first = machine_of("web");
  auto suspended = manager_->suspend("web");
  ASSERT_TRUE(suspended) << suspended.error().message();
  EXPECT_EQ(suspended->state, VmState::kSuspended);
  EXPECT_EQ(suspended->monitor_pid, 0);
  EXPECT_TRUE(first->exited());
  EXPECT_TRUE(fs::exists(manager_->suspend_dir(suspended->id) + "/fake-vm.json"));

  auto restored = manager_->start("web");
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ(restored->state, VmState::kRunning);
  auto second = machine_of("web");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->spec().restore_from, manager_->suspend_dir(restored->id));
  EXPECT_TRUE(has_request(*second, "SET_CLOCK"));
  EXPECT_FALSE(has_request(*second, "SET_HOSTNAME web"));  // it kept the one it had
  EXPECT_FALSE(fs::exists(manager_->suspend_dir(restored->id)));
  auto actions = actions_for("web");
  EXPECT_EQ(actions.back(), "restored");
}

TEST_F(VmManagerTest, AFailedSuspendLeavesTheVmRunning) {
  create("web");
  ASSERT_TRUE(manager_->start("web"));
  auto machine = machine_of("web");
  machine->set_save_error(Error::unsupported("migration blocked"));
  auto suspended = manager_->suspend("web");
  ASSERT_FALSE(suspended);
  EXPECT_TRUE(contains(suspended.error().message(), "migration blocked"));
  VmRecord vm = inspect("web");
  EXPECT_EQ(vm.state, VmState::kRunning);
  EXPECT_FALSE(fs::exists(manager_->suspend_dir(vm.id)));
  EXPECT_EQ(machine->agent_connections(), 2);  // the agent was reconnected
  // And it is still watched: its power-off is noticed.
  uint64_t before = events_.last_seq();
  machine->exit(engine::fake::kGuestPoweredOff);
  ASSERT_TRUE(wait_for_event("web", "died", before));
}

TEST_F(VmManagerTest, AnUnusableSavedStateFallsBackToBooting) {
  VmRecord vm = create("web");
  ASSERT_TRUE(manager_->start("web"));
  ASSERT_TRUE(manager_->suspend("web"));
  fs::remove(manager_->suspend_dir(vm.id) + "/fake-vm.json");
  auto restored = manager_->start("web");
  ASSERT_FALSE(restored);
  VmRecord failed = inspect("web");
  EXPECT_EQ(failed.state, VmState::kError);
  EXPECT_TRUE(contains(failed.state_reason, "could not restore the suspended VM")) << failed.state_reason;
  EXPECT_TRUE(fs::exists(manager_->suspend_dir(vm.id) + ".failed"));
  auto booted = manager_->start("web");
  ASSERT_TRUE(booted) << booted.error().message();
  EXPECT_TRUE(machine_of("web")->spec().restore_from.empty());
}

TEST_F(VmManagerTest, StoppingASuspendedVmDiscardsItsState) {
  VmRecord vm = create("web");
  ASSERT_TRUE(manager_->start("web"));
  ASSERT_TRUE(manager_->suspend("web"));
  auto stopped = manager_->stop("web", kGrace);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, VmState::kStopped);
  EXPECT_FALSE(fs::exists(manager_->suspend_dir(vm.id)));
}

// Suspend on the fork machinery: a VM whose RAM is a shared memfd is saved with a memory file and comes
// back mapping it (the fake records the restored VM's memory backing, as QemuEngine launches it); its RAM is
// then a private file mapping, so its next suspend streams, and the one after that maps again.
TEST_F(VmManagerTest, SuspendUsesAMemoryFileWhenTheRamIsSharedAndStreamsOtherwise) {
  VmRecord vm = create("web");
  std::string dir = manager_->suspend_dir(vm.id);
  auto saved_kind = [&]() {
    return parse_json(read_file(dir + "/fake-vm.json").value()).value().value("kind", "");
  };
  ASSERT_TRUE(manager_->start("web"));
  for (int round = 0; round < 3; ++round) {
    bool mapped = round % 2 == 0;
    SCOPED_TRACE(round);
    ASSERT_TRUE(manager_->suspend("web"));
    EXPECT_EQ(engine_.suspends(), round + 1);  // always tried first
    EXPECT_EQ(saved_kind(), mapped ? "memory-file" : "stream");
    EXPECT_EQ(fs::exists(dir + "/memory"), mapped);

    auto restored = manager_->start("web");
    ASSERT_TRUE(restored) << restored.error().message();
    EXPECT_EQ(restored->start_mode, "restore");
    auto machine = machine_of("web");
    const engine::MemoryBacking& memory = machine->spec().memory;
    if (mapped) {
      EXPECT_EQ(memory.kind, engine::MemoryBacking::Kind::kFile);
      EXPECT_FALSE(memory.shared);
      EXPECT_EQ(memory.path, dir + "/memory");
    } else {
      EXPECT_EQ(memory.kind, engine::MemoryBacking::Kind::kMemfd);
    }
    // The same VM, not a clone: its clock is set and its network configured, its identity kept.
    EXPECT_TRUE(has_request(*machine, "SET_CLOCK"));
    for (const auto& request : machine->requests()) {
      EXPECT_FALSE(request.starts_with("CLONE_INIT")) << request;
      EXPECT_FALSE(request.starts_with("SET_HOSTNAME")) << request;
    }
    EXPECT_FALSE(fs::exists(dir));  // consumed: the mapping keeps the pages
  }
}

TEST_F(VmManagerTest, AFailedMemoryFileSuspendLeavesTheVmRunningAndStreamsNothing) {
  VmRecord vm = create("web");
  ASSERT_TRUE(manager_->start("web"));
  auto machine = machine_of("web");
  machine->set_save_error(Error::failed_precondition("cannot save the VM's state: disk full"));
  auto suspended = manager_->suspend("web");
  ASSERT_FALSE(suspended);
  EXPECT_TRUE(contains(suspended.error().message(), "disk full")) << suspended.error().message();
  // Only kUnsupported (this VM's RAM cannot go into a memory file) falls back to streaming.
  EXPECT_EQ(engine_.suspends(), 1);
  EXPECT_EQ(inspect("web").state, VmState::kRunning);
  EXPECT_FALSE(machine->exited());
  EXPECT_FALSE(fs::exists(manager_->suspend_dir(vm.id)));
}

TEST_F(VmManagerTest, AMemoryFileSuspendWhoseFileIsGoneIsMovedAsideAndTheVmBoots) {
  VmRecord vm = create("web");
  ASSERT_TRUE(manager_->start("web"));
  ASSERT_TRUE(manager_->suspend("web"));
  std::string dir = manager_->suspend_dir(vm.id);
  fs::remove(dir + "/memory");
  auto restored = manager_->start("web");
  ASSERT_FALSE(restored);
  VmRecord failed = inspect("web");
  EXPECT_EQ(failed.state, VmState::kError);
  EXPECT_TRUE(contains(failed.state_reason, "memory is missing")) << failed.state_reason;
  EXPECT_TRUE(fs::exists(dir + ".failed/fake-vm.json"));
  auto booted = manager_->start("web");
  ASSERT_TRUE(booted) << booted.error().message();
  EXPECT_EQ(booted->start_mode, "boot");
  EXPECT_TRUE(machine_of("web")->spec().restore_from.empty());
}

TEST_F(VmManagerTest, AVmKilndDiedStartingIsSwitchedOffAtRecovery) {
  create("half-started");
  ASSERT_TRUE(manager_->start("half-started"));
  auto machine = machine_of("half-started");
  VmRecord vm = inspect("half-started");
  manager_->shutdown();
  manager_.reset();
  // What a kilnd killed between the monitor's launch and the end of the start leaves.
  vm.state = VmState::kStarting;
  ASSERT_TRUE(store_->update(vm));

  start_manager();
  ASSERT_TRUE(manager_->recover());
  VmRecord after = inspect("half-started");
  EXPECT_EQ(after.state, VmState::kStopped);
  EXPECT_EQ(after.monitor_pid, 0);
  EXPECT_TRUE(after.state_reason.starts_with("kilnd stopped while the VM was starting"))
      << after.state_reason;
  EXPECT_TRUE(machine->exited());
  // It starts again afresh.
  auto again = manager_->start("half-started");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->state, VmState::kRunning);
}

TEST_F(VmManagerTest, RestartOfKilndAdoptsSurvivorsAndSettlesTheRest) {
  create("alive");
  create("dies");
  create("paused");
  create("idle");
  for (const char* name : {"alive", "dies", "paused"}) ASSERT_TRUE(manager_->start(name));
  ASSERT_TRUE(manager_->pause("paused"));
  // kilnd died while building a VM's disk.
  VmRecord half{.id = std::string(64, 'c'), .name = "half", .state = VmState::kCreating};
  ASSERT_TRUE(store_->insert(half));
  fs::create_directories(manager_->vm_dir(half.id) + "/scratch");

  pid_t alive_pid = static_cast<pid_t>(inspect("alive").monitor_pid);
  auto alive = machine_of("alive");
  auto dies = machine_of("dies");
  auto paused = machine_of("paused");
  manager_->shutdown();
  manager_.reset();
  EXPECT_EQ(engine_.running_machines(), 3);    // released, not stopped
  dies->exit(engine::fake::kGuestPoweredOff);  // while no kilnd is watching

  start_manager();
  auto recovered = manager_->recover();
  ASSERT_TRUE(recovered) << recovered.error().message();

  VmRecord alive_vm = inspect("alive");
  EXPECT_EQ(alive_vm.state, VmState::kRunning);
  EXPECT_EQ(alive_vm.monitor_pid, alive_pid);
  EXPECT_EQ(alive->agent_connections(), 2);  // its agent was reconnected

  VmRecord dead = inspect("dies");
  EXPECT_EQ(dead.state, VmState::kStopped);
  EXPECT_TRUE(dead.state_reason.starts_with("the VM's monitor exited while kilnd was not running"))
      << dead.state_reason;
  EXPECT_EQ(dead.monitor_pid, 0);

  EXPECT_EQ(inspect("paused").state, VmState::kPaused);
  EXPECT_EQ(paused->agent_connections(), 1);  // a paused guest cannot answer; reconnected on resume
  EXPECT_EQ(inspect("idle").state, VmState::kStopped);
  EXPECT_EQ(manager_->inspect("half").error().category(), ErrorCategory::kNotFound);
  EXPECT_FALSE(fs::exists(manager_->vm_dir(half.id)));

  // The adopted VMs are fully managed again: exec, resume, and the watcher notices their exit.
  auto [ours, theirs] = make_socket_pair().value();
  agent::ExecIo io{.client = std::move(theirs), .tty = true};
  auto handle = manager_->exec("alive", {.argv = {"true"}, .tty = true}, io);
  ASSERT_TRUE(handle) << handle.error().message();
  EXPECT_TRUE(handle->wait(kEventWait));
  auto resumed = manager_->resume("paused");
  ASSERT_TRUE(resumed) << resumed.error().message();
  EXPECT_EQ(paused->agent_connections(), 2);
  uint64_t before = events_.last_seq();
  alive->exit(engine::fake::kGuestPoweredOff);
  ASSERT_TRUE(wait_for_event("alive", "died", before));
  EXPECT_EQ(inspect("alive").state_reason, "the guest powered off");
  auto stopped = manager_->stop("paused", kGrace);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_TRUE(has_request(*paused, "SHUTDOWN"));
}

TEST_F(VmManagerTest, ConcurrentCreatesOfOneNameHaveOneWinner) {
  constexpr int kThreads = 4;
  std::latch ready(kThreads);
  std::atomic<int> created = 0;
  std::atomic<int> taken = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      ready.arrive_and_wait();
      auto vm = manager_->create_vm({.name = "web",
                                     .disk_mib = 32,
                                     .source = {.kind = RootSource::Kind::kDirectory, .value = rootfs_}});
      if (vm)
        ++created;
      else if (vm.error().category() == ErrorCategory::kAlreadyExists)
        ++taken;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(created, 1);
  EXPECT_EQ(taken, kThreads - 1);
  EXPECT_EQ(manager_->list({}).value().size(), 1U);
}

}  // namespace
}  // namespace kiln::daemon

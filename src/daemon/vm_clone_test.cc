// VmManager::clone_vm on the FakeEngine: a running source is snapshotted while paused and keeps running, the
// clone is forked and given its own identity, and every failure leaves no VM, no file and the source as it
// was.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/temp_dir.h"
#include "daemon/vm_manager.h"
#include "daemon/vm_manager_fixture.h"
#include "engine/fake/fake_engine.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;
using agent::MessageType;
using engine::fake::AgentReaction;
using engine::fake::FakeScript;
using namespace std::chrono_literals;

class VmCloneTest : public testing::VmManagerFixture {
 protected:
  // A running VM of 2 CPUs and 768 MiB with a 32 MiB root disk.
  VmRecord running_source(const std::string& name, std::vector<SharedFolder> folders = {}) {
    auto vm = manager_->create_vm({.name = name,
                                   .cpus = 2,
                                   .memory_mib = 768,
                                   .disk_mib = 32,
                                   .source = {.kind = RootSource::Kind::kDirectory, .value = rootfs_},
                                   .labels = {{"team", "a"}},
                                   .folders = std::move(folders)});
    EXPECT_TRUE(vm) << vm.error().message();
    auto started = manager_->start(name);
    EXPECT_TRUE(started) << started.error().message();
    return started.value_or(VmRecord{});
  }

  std::shared_ptr<engine::fake::FakeMachine> machine_of(const std::string& name) {
    auto vm = manager_->inspect(name);
    EXPECT_TRUE(vm) << vm.error().message();
    return engine_.machine(static_cast<pid_t>(vm.value_or(VmRecord{}).monitor_pid));
  }

  // The VMs' directories under <root>/vms.
  std::vector<std::string> vm_dirs() {
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator(config_.root + "/vms"))
      out.push_back(entry.path().filename());
    return out;
  }

  // What a failed clone must leave: only the source, running, with its monitor and files.
  void expect_nothing_left(const VmRecord& source, int machines_before) {
    auto all = manager_->list({});
    ASSERT_TRUE(all);
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ(all->front().id, source.id);
    EXPECT_EQ(all->front().state, VmState::kRunning);
    EXPECT_EQ(vm_dirs(), std::vector<std::string>{source.id});
    std::vector<std::string> runtime_dirs;
    for (const auto& entry : fs::directory_iterator(config_.run_dir + "/vms"))
      runtime_dirs.push_back(entry.path().string());
    EXPECT_EQ(runtime_dirs, std::vector<std::string>{manager_->runtime_dir(source.id)});
    EXPECT_EQ(engine_.running_machines(), machines_before);
    auto machine = machine_of(source.name);
    ASSERT_TRUE(machine);
    EXPECT_EQ(machine->run_state(), engine::VmRunState::kRunning);
  }
};

TEST_F(VmCloneTest, ARunningVmIsSnapshottedWhilePausedAndTheCloneIsForkedWithItsOwnIdentity) {
  VmRecord source = running_source("src");
  int launches = engine_.launches();
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_TRUE(clone) << clone.error().message();
  EXPECT_EQ(clone->state, VmState::kRunning);
  EXPECT_EQ(clone->start_mode, "fork");
  EXPECT_EQ(clone->cpus, 2u);
  EXPECT_EQ(clone->memory_mib, 768u);
  EXPECT_EQ(clone->disk_mib, 32u);
  EXPECT_EQ(clone->labels, source.labels);
  EXPECT_EQ(clone->source.kind, RootSource::Kind::kVm);
  EXPECT_EQ(clone->source.value, source.id);
  ASSERT_FALSE(clone->start_timings.empty());
  EXPECT_EQ(clone->start_timings.front().first, "snapshot");
  EXPECT_EQ(engine_.snapshots(), 1);
  EXPECT_TRUE(engine_.paused_while_snapshotting());  // the disk was copied while the source was paused
  EXPECT_EQ(engine_.forks(), 1);
  EXPECT_EQ(engine_.launches(), launches + 1);  // the fake forks by launching; nothing booted otherwise
  // Its own disk, a copy; the snapshot's names are gone once the clone maps it.
  EXPECT_TRUE(fs::exists(manager_->vm_dir(clone->id) + "/root.ext4"));
  EXPECT_FALSE(fs::exists(manager_->vm_dir(clone->id) + "/snapshot"));
  auto machine = machine_of("copy");
  ASSERT_TRUE(machine);
  EXPECT_EQ(machine->spec().memory.kind, engine::MemoryBacking::Kind::kFile);
  EXPECT_FALSE(machine->spec().memory.shared);
  bool identified = false;
  for (const auto& request : machine->requests()) {
    if (request == "CLONE_INIT copy reseed=true") identified = true;
  }
  EXPECT_TRUE(identified);
  // The source runs on, unpaused.
  auto source_machine = machine_of("src");
  ASSERT_TRUE(source_machine);
  EXPECT_EQ(source_machine->run_state(), engine::VmRunState::kRunning);
  EXPECT_EQ(manager_->inspect("src")->state, VmState::kRunning);

  // Its next start boots from its disk copy.
  ASSERT_TRUE(manager_->stop("copy", 10s));
  auto restarted = manager_->start("copy");
  ASSERT_TRUE(restarted) << restarted.error().message();
  EXPECT_EQ(restarted->start_mode, "boot");
}

TEST_F(VmCloneTest, ACloneWithStartFalseIsADiskCopyTakenWhileTheSourceIsPaused) {
  running_source("src");
  auto clone = manager_->clone_vm("src", {.name = "copy", .start = false});
  ASSERT_TRUE(clone) << clone.error().message();
  EXPECT_EQ(clone->state, VmState::kStopped);
  EXPECT_EQ(engine_.snapshots(), 0);
  EXPECT_TRUE(fs::exists(manager_->vm_dir(clone->id) + "/root.ext4"));
  EXPECT_EQ(machine_of("src")->run_state(), engine::VmRunState::kRunning);
}

TEST_F(VmCloneTest, AStoppedSourceIsCopiedAndTheCloneBoots) {
  running_source("src");
  ASSERT_TRUE(manager_->stop("src", 10s));
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_TRUE(clone) << clone.error().message();
  EXPECT_EQ(clone->state, VmState::kRunning);
  EXPECT_EQ(clone->start_mode, "boot");
  EXPECT_EQ(engine_.snapshots(), 0);
}

TEST_F(VmCloneTest, AFailedSnapshotLeavesNothingAndTheSourceRunning) {
  VmRecord source = running_source("src");
  int machines = engine_.running_machines();
  FakeScript script;
  script.snapshot_error = Error::failed_precondition("cannot save the VM's state: blocked");
  engine_.set_script(script);
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_FALSE(clone);
  EXPECT_EQ(clone.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(clone.error().message().find("blocked"), std::string::npos) << clone.error().message();
  expect_nothing_left(source, machines);
  // The name is free again.
  engine_.set_script({});
  EXPECT_TRUE(manager_->clone_vm("src", {.name = "copy"}));
}

TEST_F(VmCloneTest, AFailedForkLeavesNothing) {
  VmRecord source = running_source("src");
  int machines = engine_.running_machines();
  FakeScript script;
  script.fork_error = Error::failed_precondition("QEMU refused the state");
  engine_.set_script(script);
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_FALSE(clone);
  EXPECT_NE(clone.error().message().find("QEMU refused the state"), std::string::npos);
  expect_nothing_left(source, machines);
}

TEST_F(VmCloneTest, ACloneWhoseAgentRefusesItsIdentityIsRemoved) {
  VmRecord source = running_source("src");
  int machines = engine_.running_machines();
  FakeScript script;
  script.reactions[MessageType::kCloneInit] = AgentReaction::fail(Error::internal("no entropy"));
  engine_.set_script(script);
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_FALSE(clone);
  EXPECT_NE(clone.error().message().find("no entropy"), std::string::npos) << clone.error().message();
  expect_nothing_left(source, machines);
}

TEST_F(VmCloneTest, ATakenNameIsRefusedBeforeTheSourceIsTouched) {
  VmRecord source = running_source("src");
  int machines = engine_.running_machines();
  auto clone = manager_->clone_vm("src", {.name = "src"});
  ASSERT_FALSE(clone);
  EXPECT_EQ(clone.error().category(), ErrorCategory::kAlreadyExists);
  EXPECT_EQ(engine_.snapshots(), 0);
  expect_nothing_left(source, machines);
}

TEST_F(VmCloneTest, RefusedSources) {
  auto unknown = manager_->clone_vm("nope", {.name = "copy"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().category(), ErrorCategory::kNotFound);

  VmRecord source = running_source("src");
  ASSERT_TRUE(manager_->suspend("src"));
  auto suspended = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_FALSE(suspended);
  EXPECT_EQ(suspended.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(suspended.error().message(),
            "cannot clone VM src: it is suspended (a running, paused or stopped VM can be cloned)");
  EXPECT_FALSE(manager_->inspect("copy"));
  // Restored from its memory file, its RAM is that file mapped private, as a fork's: refused until it boots.
  ASSERT_TRUE(manager_->start("src"));
  auto restored = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_FALSE(restored);
  EXPECT_EQ(restored.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(restored.error().message().find("restored from a memory file"), std::string::npos)
      << restored.error().message();
  EXPECT_FALSE(manager_->inspect("copy"));
  ASSERT_TRUE(manager_->restart("src", std::chrono::seconds(5)));

  // A clone is a fork: its RAM is its snapshot's file, mapped private, and cannot be left out of a save.
  ASSERT_TRUE(manager_->clone_vm("src", {.name = "copy"}));
  int machines = engine_.running_machines();
  auto of_clone = manager_->clone_vm("copy", {.name = "copy2"});
  ASSERT_FALSE(of_clone);
  EXPECT_EQ(of_clone.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(of_clone.error().message().find("fork"), std::string::npos) << of_clone.error().message();
  EXPECT_FALSE(manager_->inspect("copy2"));
  EXPECT_EQ(engine_.running_machines(), machines);
  EXPECT_EQ(manager_->inspect("copy")->state, VmState::kRunning);
}

TEST_F(VmCloneTest, APausedSourceIsClonedAndStaysPaused) {
  running_source("src");
  ASSERT_TRUE(manager_->pause("src"));
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_TRUE(clone) << clone.error().message();
  EXPECT_EQ(clone->state, VmState::kRunning);
  EXPECT_EQ(manager_->inspect("src")->state, VmState::kPaused);
  EXPECT_EQ(machine_of("src")->run_state(), engine::VmRunState::kPaused);
  auto cold = manager_->clone_vm("src", {.name = "cold", .start = false});
  ASSERT_TRUE(cold) << cold.error().message();
  EXPECT_EQ(machine_of("src")->run_state(), engine::VmRunState::kPaused);
}

TEST_F(VmCloneTest, ASourceSharingFoldersIsRefused) {
  std::string host = dir_->path() + "/share";
  fs::create_directories(host);
  VmRecord source = running_source("src", {{.host_path = host, .guest_path = "data"}});
  int machines = engine_.running_machines();
  auto clone = manager_->clone_vm("src", {.name = "copy"});
  ASSERT_FALSE(clone);
  EXPECT_EQ(clone.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(clone.error().message().find("shared folders"), std::string::npos);
  expect_nothing_left(source, machines);
}

}  // namespace
}  // namespace kiln::daemon

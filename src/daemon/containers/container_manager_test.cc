// ContainerManager on the FakeEngine: records, the VM each container owns, the main process's exit, logs,
// auto-remove, name conflicts and dockerd's errors. The fake agent's processes exit at once (echo, true,
// false); long-running containers are tested against real VMs in tests/docker.
#include "daemon/containers/container_manager.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "daemon/containers/container_runtime.h"
#include "daemon/containers/test_support.h"

namespace kiln::daemon::containers {
namespace {

using namespace std::chrono_literals;

class ContainerManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stack = testing::ContainerStack::create();
    ASSERT_TRUE(stack) << stack.error().message();
    stack_ = std::move(*stack);
  }

  ContainerManager& containers() { return stack_->containers(); }

  NewContainer request(std::vector<std::string> cmd, std::string name = {}) {
    NewContainer out;
    out.name = std::move(name);
    out.config.image = testing::ContainerStack::kTestImage;
    out.config.cmd = std::move(cmd);
    out.cmd_given = true;
    return out;
  }

  std::string logs(const std::string& id) {
    std::string text;
    auto read = containers().read_logs(id, {}, {}, [&](const LogEntry& entry) {
      text += entry.text;
      return true;
    });
    EXPECT_TRUE(read) << read.error().message();
    return text;
  }

  std::unique_ptr<testing::ContainerStack> stack_;
};

TEST_F(ContainerManagerTest, CreateRecordsTheContainerAndItsVm) {
  auto created = containers().create(request({"echo", "hi"}, "web"));
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(created->id.size(), 64U);
  EXPECT_EQ(created->name, "web");
  EXPECT_EQ(created->state, ContainerState::kCreated);
  EXPECT_EQ(created->config.hostname, created->id.substr(0, 12));
  EXPECT_TRUE(created->config.image_id.starts_with("sha256:"));
  // Config.Env is the client's and the image's, as dockerd shows it; HOSTNAME is added to the process only.
  EXPECT_TRUE(std::none_of(created->config.env.begin(), created->config.env.end(),
                           [](const std::string& entry) { return entry.starts_with("HOSTNAME="); }));
  auto env = process_environment(*created);
  EXPECT_NE(std::find(env.begin(), env.end(), "HOSTNAME=" + created->id.substr(0, 12)), env.end());
  auto vm = stack_->vms().inspect(created->vm_id);
  ASSERT_TRUE(vm) << vm.error().message();
  EXPECT_EQ(vm->owner, created->id);
  EXPECT_EQ(vm->labels.at(std::string(kContainerNameLabel)), "web");
  EXPECT_EQ(vm->source.kind, RootSource::Kind::kContainer);
  EXPECT_EQ(vm->memory_mib, 128U);
  EXPECT_TRUE(std::filesystem::exists(stack_->vms().container_layer_path(vm->id)));
  EXPECT_EQ(containers().inspect("web")->id, created->id);
  EXPECT_EQ(containers().inspect(created->id.substr(0, 5))->id, created->id);
}

TEST_F(ContainerManagerTest, TheContainersVmIsRefusedToOtherApis) {
  auto created = containers().create(request({"true"}, "owned"));
  ASSERT_TRUE(created) << created.error().message();
  auto removed = stack_->vms().remove(created->vm_id, true);
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(removed.error().message().find("Docker container owned"), std::string::npos)
      << removed.error().message();
  EXPECT_FALSE(stack_->vms().start(created->vm_id));
  EXPECT_FALSE(stack_->vms().update(created->vm_id, {.cpus = 2}));
}

TEST_F(ContainerManagerTest, RunToExitRecordsTheCodeKeepsTheLogsAndStopsTheVm) {
  auto created = containers().create(request({"echo", "hello", "world"}));
  ASSERT_TRUE(created) << created.error().message();
  auto started = containers().start(created->id);
  ASSERT_TRUE(started) << started.error().message();
  EXPECT_TRUE(*started);
  auto code = containers().wait(created->id, WaitCondition::kNotRunning, {});
  ASSERT_TRUE(code) << code.error().message();
  EXPECT_EQ(*code, 0);
  auto after = containers().inspect(created->id).value();
  EXPECT_EQ(after.state, ContainerState::kExited);
  EXPECT_FALSE(after.finished_at.empty());
  EXPECT_EQ(logs(created->id), "hello world\n");
  EXPECT_EQ(stack_->vms().inspect(created->vm_id)->state, VmState::kStopped);
  // The run's requests: the root assembled from the two disks, then the main process in it.
  auto machine = stack_->engine().machine(static_cast<pid_t>(after.pid == 0 ? 1'000'000 : after.pid));
  ASSERT_TRUE(machine);
  auto requests = machine->requests();
  EXPECT_NE(std::find(requests.begin(), requests.end(), "RUN echo hello world"), requests.end());

  // Started again: the same container, its logs appended.
  ASSERT_TRUE(containers().start(created->id));
  EXPECT_EQ(containers().wait(created->id, WaitCondition::kNotRunning, {}).value(), 0);
  EXPECT_EQ(logs(created->id), "hello world\nhello world\n");
}

TEST_F(ContainerManagerTest, ExitCodeOfTheMainProcess) {
  auto created = containers().create(request({"false"}));
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_TRUE(containers().start(created->id));
  EXPECT_EQ(containers().wait(created->id, WaitCondition::kNotRunning, {}).value(), 1);
  EXPECT_EQ(containers().inspect(created->id)->exit_code, 1);
}

TEST_F(ContainerManagerTest, MissingCommandIs127InTheWordsTheCliMaps) {
  auto created = containers().create(request({"nosuch"}));
  ASSERT_TRUE(created) << created.error().message();
  auto started = containers().start(created->id);
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_NE(started.error().message().find("executable file not found"), std::string::npos)
      << started.error().message();
  auto after = containers().inspect(created->id).value();
  EXPECT_EQ(after.exit_code, 127);
  EXPECT_EQ(after.state, ContainerState::kCreated);
  EXPECT_EQ(stack_->vms().inspect(after.vm_id)->state, VmState::kStopped);
}

TEST_F(ContainerManagerTest, AutoRemoveRemovesAfterTheExitAndWaitRemovedSeesIt) {
  auto asked = request({"echo", "bye"});
  asked.host_config.auto_remove = true;
  auto created = containers().create(asked);
  ASSERT_TRUE(created) << created.error().message();
  std::promise<Result<int>> waited;
  std::thread waiter([&] { waited.set_value(containers().wait(created->id, WaitCondition::kRemoved, {})); });
  ASSERT_TRUE(containers().start(created->id));
  auto code = waited.get_future().get();
  waiter.join();
  ASSERT_TRUE(code) << code.error().message();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(containers().inspect(created->id).error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(stack_->vms().inspect(created->vm_id).error().category(), ErrorCategory::kNotFound);
}

TEST_F(ContainerManagerTest, NamesFollowDockersRules) {
  ASSERT_TRUE(containers().create(request({"true"}, "taken")));
  auto clash = containers().create(request({"true"}, "taken"));
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().category(), ErrorCategory::kAlreadyExists);
  EXPECT_NE(
      clash.error().message().find("Conflict. The container name \"/taken\" is already in use by container"),
      std::string::npos);
  auto bad = containers().create(request({"true"}, "no way"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().category(), ErrorCategory::kInvalidArgument);
  auto generated = containers().create(request({"true"}));
  ASSERT_TRUE(generated);
  EXPECT_NE(generated->name.find('_'), std::string::npos);
  // Nothing half-made: the failed creates left no container and no VM behind.
  EXPECT_EQ(containers().list()->size(), 2U);
  EXPECT_EQ(stack_->vms().list({})->size(), 2U);
}

TEST_F(ContainerManagerTest, UnknownImageAndNoCommandAreDockersErrors) {
  auto asked = request({"true"});
  asked.config.image = "nosuch";
  auto missing = containers().create(asked);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(missing.error().message(), "No such image: nosuch:latest");
  auto empty = containers().create(request({}));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message(), "No command specified");
}

TEST_F(ContainerManagerTest, RemoveAndRename) {
  auto created = containers().create(request({"true"}, "old"));
  ASSERT_TRUE(created);
  ASSERT_TRUE(containers().rename("old", "new"));
  EXPECT_EQ(containers().inspect("new")->id, created->id);
  EXPECT_EQ(stack_->vms().inspect(created->vm_id)->labels.at(std::string(kContainerNameLabel)), "new");
  EXPECT_FALSE(containers().rename("new", "new"));
  ASSERT_TRUE(containers().remove("new", false));
  EXPECT_EQ(containers().inspect(created->id).error().message(), "No such container: " + created->id);
  EXPECT_FALSE(std::filesystem::exists(stack_->vms().vm_dir(created->vm_id)));
}

}  // namespace
}  // namespace kiln::daemon::containers

namespace kiln::daemon::containers {
namespace {

// Container VMs fork from a template (kilnd's default), on the fake engine.
class ForkedContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stack = testing::ContainerStack::create(true);
    ASSERT_TRUE(stack) << stack.error().message();
    stack_ = std::move(*stack);
  }

  // Creates and runs `echo hi` to its end; returns the container's VM as it last started.
  VmRecord run(std::map<std::string, std::string> labels = {}) {
    auto vm = stack_->run_echo([&](NewContainer& request) { request.config.labels = std::move(labels); });
    EXPECT_TRUE(vm) << vm.error().message();
    return vm.value_or(VmRecord{});
  }

  std::unique_ptr<testing::ContainerStack> stack_;
};

TEST_F(ForkedContainerTest, ContainersForkFromOneTemplateAndGetTheirIdentityInOneMessage) {
  VmRecord first = run();
  VmRecord second = run();
  EXPECT_EQ(first.start_mode, "fork");
  EXPECT_EQ(second.start_mode, "fork");
  EXPECT_FALSE(first.template_key.empty());
  EXPECT_EQ(first.template_key, second.template_key);
  EXPECT_EQ(stack_->engine().template_builds(), 1);
  EXPECT_EQ(stack_->engine().forks(), 2);
  // The first start built the template and says so; both say how long the fork and the setup took.
  auto has_step = [](const VmRecord& vm, std::string_view step) {
    return std::any_of(vm.start_timings.begin(), vm.start_timings.end(),
                       [&](const auto& entry) { return entry.first == step; });
  };
  EXPECT_TRUE(has_step(first, "template-build"));
  EXPECT_FALSE(has_step(second, "template-build"));
  EXPECT_TRUE(has_step(second, "fork"));
  EXPECT_TRUE(has_step(second, "agent"));
  EXPECT_TRUE(has_step(second, "clone-init"));
  // The template is on disk under its key.
  EXPECT_TRUE(std::filesystem::exists(stack_->dir() + "/root/templates/" + first.template_key));

  // No second boot's worth of requests: the clone's agent got HELLO, CLONE_INIT with the VM's name and the
  // container's root, then the process.
  auto machine = stack_->engine().machine(static_cast<pid_t>(1'000'000 + stack_->engine().launches() - 1));
  ASSERT_TRUE(machine);
  auto requests = machine->requests();
  ASSERT_GE(requests.size(), 3U);
  EXPECT_EQ(requests[0], "HELLO");
  EXPECT_EQ(requests[1], fmt::format("CLONE_INIT {} reseed=true serial:kiln-disk0:/kiln/image "
                                     "serial:kiln-disk1:/kiln/layer overlay:/kiln/rootfs",
                                     second.name));
  EXPECT_TRUE(std::none_of(requests.begin(), requests.end(), [](const std::string& r) {
    return r.starts_with("SET_HOSTNAME") || r.starts_with("MOUNT");
  }));
}

TEST_F(ForkedContainerTest, AnAutoRemovedContainersVmIsSwitchedOffAndAKeptOneShutsDown) {
  // The machine whose agent ran `echo <word>`.
  auto machine_that_ran = [&](const std::string& word) -> std::shared_ptr<engine::fake::FakeMachine> {
    for (pid_t pid = 1'000'000; pid < 1'000'000 + 100; ++pid) {
      auto machine = stack_->engine().machine(pid);
      if (!machine) continue;
      auto requests = machine->requests();
      if (std::find(requests.begin(), requests.end(), "RUN echo " + word) != requests.end()) return machine;
    }
    return nullptr;
  };
  for (bool auto_remove : {true, false}) {
    std::string word = auto_remove ? "removed" : "kept";
    NewContainer request;
    request.config.image = testing::ContainerStack::kTestImage;
    request.config.cmd = {"echo", word};
    request.cmd_given = true;
    request.host_config.auto_remove = auto_remove;
    auto created = stack_->containers().create(request);
    ASSERT_TRUE(created) << created.error().message();
    ASSERT_TRUE(stack_->containers().start(created->id));
    auto condition = auto_remove ? WaitCondition::kRemoved : WaitCondition::kNotRunning;
    EXPECT_TRUE(stack_->containers().wait(created->id, condition, {}));
    auto machine = machine_that_ran(word);
    ASSERT_TRUE(machine) << word;
    EXPECT_TRUE(machine->exited());
    auto requests = machine->requests();
    // --rm: nothing of the VM outlives it, so no guest shutdown (sync, power-off) is waited for.
    EXPECT_EQ(std::count(requests.begin(), requests.end(), "SHUTDOWN"), auto_remove ? 0 : 1) << word;
  }
}

TEST_F(ForkedContainerTest, TheColdBootLabelBootsThatContainer) {
  VmRecord cold = run({{std::string(kBootLabel), "cold"}});
  EXPECT_EQ(cold.start_mode, "boot");
  EXPECT_TRUE(cold.template_key.empty());
  EXPECT_EQ(stack_->engine().forks(), 0);
  EXPECT_EQ(stack_->engine().template_builds(), 0);
}

TEST_F(ForkedContainerTest, AFailedTemplateBuildBootsColdAndIsNotRetriedAtOnce) {
  engine::fake::FakeScript script;
  script.build_error = Error::unavailable("the template's guest did not answer");
  stack_->engine().set_script(script);
  EXPECT_EQ(run().start_mode, "boot");
  EXPECT_EQ(run().start_mode, "boot");
  EXPECT_EQ(stack_->engine().template_builds(), 1);
}

TEST_F(ForkedContainerTest, AFailedForkBootsCold) {
  engine::fake::FakeScript script;
  script.fork_error = Error::failed_precondition("template memory file is missing");
  stack_->engine().set_script(script);
  VmRecord vm = run();
  EXPECT_EQ(vm.start_mode, "boot");
  EXPECT_EQ(stack_->engine().forks(), 1);
}

TEST_F(ForkedContainerTest, ATemplateRemovedUnderKilndIsBuiltAgain) {
  VmRecord first = run();
  ASSERT_EQ(first.start_mode, "fork");
  std::filesystem::remove_all(stack_->dir() + "/root/templates/" + first.template_key);
  EXPECT_EQ(run().start_mode, "boot");  // the fork is refused before anything starts; the VM boots
  EXPECT_EQ(run().start_mode, "fork");  // and the next start has a new template
  EXPECT_EQ(stack_->engine().template_builds(), 2);
}

TEST_F(ForkedContainerTest, PruneKeepsTemplatesARunningVmUsesAndDropsDamagedOnes) {
  VmRecord vm = run();
  std::string dir = stack_->dir() + "/root/templates/";
  std::filesystem::create_directories(dir + "damaged");
  std::filesystem::create_directories(dir + ".building-0123-ab");
  std::filesystem::last_write_time(dir + ".building-0123-ab",
                                   std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
  std::filesystem::create_directories(dir + ".building-4567-cd");  // another process's build in progress
  stack_->templates()->prune({vm.template_key});
  EXPECT_TRUE(std::filesystem::exists(dir + vm.template_key));
  EXPECT_FALSE(std::filesystem::exists(dir + "damaged"));
  EXPECT_FALSE(std::filesystem::exists(dir + ".building-0123-ab"));
  EXPECT_TRUE(std::filesystem::exists(dir + ".building-4567-cd"));
  // Not in use, but fine and recently used: kept too.
  stack_->templates()->prune({});
  EXPECT_TRUE(std::filesystem::exists(dir + vm.template_key));
}

}  // namespace
}  // namespace kiln::daemon::containers

// The FakeEngine is only useful if it behaves like an engine: these pin the parts its users rely on
// (adoption, exit notification, an agent that speaks the real protocol and freezes while its VM is paused).
#include "engine/fake/fake_engine.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>

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

// A VM forked ahead of need (a warm pool's) with placeholders: the fake swaps disks with QemuVm's checks and
// records what it did, for the tests of kilnd's pool.
TEST_F(FakeEngineTest, SwapsDisksIntoAForkedVmsSlotsWithTheEnginesChecks) {
  VmSpec pool = spec();
  pool.disks = {{.read_only = true, .placeholder_bytes = 1 << 20}, {.placeholder_bytes = 1 << 20}};
  std::string template_dir = dir_->path() + "/template";
  ASSERT_EQ(::mkdir(template_dir.c_str(), 0755), 0);
  auto built = engine_.build_template(pool, template_dir, [](VmInstance&) -> Result<void> { return ok(); });
  ASSERT_TRUE(built) << built.error().message();
  auto vm = engine_.fork(*built, pool).value();
  auto machine = engine_.machine(vm->monitor_pid());
  std::string image = dir_->path() + "/image.img", layer = dir_->path() + "/layer.img";
  ASSERT_TRUE(write_file_atomic(image, std::string(4096, 'i')));
  ASSERT_TRUE(write_file_atomic(layer, std::string(4096, 'l')));
  std::string big = dir_->path() + "/big.img";
  ASSERT_TRUE(write_file_atomic(big, std::string((1 << 20) + 1, 'b')));

  auto refused = [&](size_t slot, const DiskSpec& disk, ErrorCategory category, std::string_view why) {
    auto swapped = vm->swap_disk(slot, disk);
    ASSERT_FALSE(swapped);
    EXPECT_EQ(swapped.error().category(), category) << swapped.error().message();
    EXPECT_NE(swapped.error().message().find(why), std::string::npos) << swapped.error().message();
  };
  refused(2, {.path = layer}, ErrorCategory::kInvalidArgument, "no disk slot 2");
  refused(0, {.path = image}, ErrorCategory::kFailedPrecondition, "disk slot 0 is read-only");
  refused(1, {.path = big}, ErrorCategory::kFailedPrecondition, "larger than disk slot 1 (1048576 bytes)");
  refused(1, {.path = dir_->path() + "/missing.img"}, ErrorCategory::kNotFound, "missing.img");
  EXPECT_TRUE(machine->changes().empty());

  ASSERT_TRUE(vm->swap_disk(0, {.path = image, .read_only = true}));
  ASSERT_TRUE(vm->swap_disk(1, {.path = layer}));
  ASSERT_TRUE(vm->swap_disk(1, {}));
  EXPECT_EQ(machine->changes(),
            (std::vector<std::string>{"swap 0 " + image + " ro", "swap 1 " + layer + " rw",
                                      "swap 1 placeholder rw"}));
  auto disks = machine->disks();
  ASSERT_EQ(disks.size(), 2u);
  EXPECT_EQ(disks[0].path, image);
  EXPECT_EQ(disks[1].path, "");
  EXPECT_EQ(disks[1].placeholder_bytes, 1u << 20);  // the slot's size

  machine->exit("gone");
  EXPECT_EQ(vm->swap_disk(1, {.path = layer}).error().category(), ErrorCategory::kUnavailable);
}

TEST_F(FakeEngineTest, AddsShareEntriesOnlyToALateEntriesShare) {
  VmSpec pool = spec();
  pool.shares = {{.tag = "kilnshare0", .host_path = dir_->path(), .late_entries = true},
                 {.tag = "kilnshare1", .host_path = dir_->path()}};
  auto vm = engine_.launch(pool).value();
  auto machine = engine_.machine(vm->monitor_pid());
  std::string conf = dir_->path() + "/app.conf";
  ASSERT_TRUE(write_file_atomic(conf, "x"));

  auto refused = vm->add_share_entries(1, {{.name = "data", .source = dir_->path()}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(vm->add_share_entries(2, {}).error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_FALSE(vm->add_share_entries(0, {{.name = "a/b", .source = dir_->path()}}));
  EXPECT_FALSE(vm->add_share_entries(0, {{.name = "data", .source = dir_->path() + "/missing"}}));
  EXPECT_TRUE(machine->changes().empty());

  ASSERT_TRUE(vm->add_share_entries(
      0, {{.name = "data", .source = dir_->path()}, {.name = "conf", .source = conf, .read_only = true}}));
  auto again = vm->add_share_entries(0, {{.name = "data", .source = dir_->path()}});
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find("used twice"), std::string::npos) << again.error().message();
  EXPECT_EQ(machine->changes(),
            (std::vector<std::string>{fmt::format("share 0 data={} conf={}:ro", dir_->path(), conf)}));
  EXPECT_EQ(machine->shares().at(0).entries.size(), 2u);
}

}  // namespace
}  // namespace kiln::engine::fake

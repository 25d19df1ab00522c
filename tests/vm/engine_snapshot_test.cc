// Suspend to disk and restore (VmInstance::save_state, VmSpec::restore_from) against real VMs (TCG here):
// the guest's memory, processes and open files survive; the saved VM holds no host process; snapshots that
// do not fit the VM, or are damaged, are refused without leaving a QEMU behind. Prints the save/restore
// times and state sizes recorded in docs/benchmarks.md.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "agent/client/agent_connection.h"
#include "common/temp_dir.h"
#include "engine/engine_factory.h"
#include "engine/graceful_stop.h"
#include "engine/snapshot/manifest.h"
#include "guest/guest_kit.h"

namespace kiln::engine {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

struct Output {
  ExitStatus status = ExitStatus::exited(0);
  std::string out;
};

// Runs `script` with sh in the guest and collects its stdout.
Result<Output> run(agent::AgentConnection& agent, const std::string& script) {
  agent::ProcessId id = KILN_TRY(agent.start_process({.argv = {"sh", "-c", script}}));
  Output output;
  auto deadline = Clock::now() + 120s;
  for (;;) {
    for (auto stream : {agent::OutputStream::kStdout, agent::OutputStream::kStderr}) {
      std::string_view pending = agent.pending_output(id, stream);
      if (stream == agent::OutputStream::kStdout) output.out.append(pending);
      agent.consume_output(id, stream, pending.size());
    }
    if (auto status = agent.exit_status(id)) {
      output.status = *status;
      break;
    }
    if (Clock::now() > deadline)
      return Error::timeout(fmt::format("guest command did not finish: {}", script));
    KILN_TRY(agent.pump(100ms));
  }
  agent.release(id);
  return output;
}

// Whether any process on the host has `needle` (a per-test runtime dir) on its command line.
bool some_process_mentions(const std::string& needle) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = read_file(entry.path().string() + "/cmdline", 1 << 20);
    if (cmdline && cmdline->find(needle) != std::string::npos) return true;
  }
  return false;
}

// The monitor's resident memory in MiB (VmRSS), for the figures.
double rss_mib(pid_t pid) {
  auto status = read_file(fmt::format("/proc/{}/status", pid), 1 << 16);
  if (!status) return -1;
  size_t at = status->find("VmRSS:");
  return at == std::string::npos ? -1 : std::stod(status->substr(at + 6)) / 1024;
}

long ms_since(Clock::time_point start) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

class EngineSnapshot : public ::testing::Test {
 protected:
  void SetUp() override {
    auto runtime = TempDir::create("kiln-snapshot-run-");
    ASSERT_TRUE(runtime) << runtime.error().message();
    runtime_dir_.emplace(std::move(*runtime));
    auto snapshots = TempDir::create("kiln-snapshot-dir-");
    ASSERT_TRUE(snapshots) << snapshots.error().message();
    snapshot_dir_.emplace(std::move(*snapshots));
    auto kit = guest::resolve_guest_kit({});
    ASSERT_TRUE(kit) << kit.error().message();
    kernel_ = kit->kernel;
    initramfs_ = kit->initramfs;
    auto engine = make_engine({.name = "qemu"});
    ASSERT_TRUE(engine) << engine.error().message();
    engine_ = std::move(*engine);
  }

  VmSpec spec(uint64_t memory_mib) const {
    return {.name = "snapshot",
            .memory_mib = memory_mib,
            .kernel = kernel_,
            .initrd = initramfs_,
            .runtime_dir = runtime_dir_->path()};
  }

  std::unique_ptr<agent::AgentConnection> connect_agent(VmInstance& vm) {
    auto channel = vm.connect_agent();
    EXPECT_TRUE(channel) << channel.error().message();
    if (!channel) return nullptr;
    auto connection = agent::AgentConnection::connect(std::move(*channel), 180s);
    EXPECT_TRUE(connection) << connection.error().message();
    return connection ? std::move(*connection) : nullptr;
  }

  // Boots a VM, lets the agent answer, and saves it into snapshot_dir_.
  void boot_and_save(uint64_t memory_mib) {
    auto vm = engine_->launch(spec(memory_mib));
    ASSERT_TRUE(vm) << vm.error().message();
    auto agent = connect_agent(**vm);
    ASSERT_TRUE(agent);
    auto saved = (*vm)->save_state(snapshot_dir_->path());
    ASSERT_TRUE(saved) << saved.error().message();
  }

  std::string state_file() const { return snapshot_dir_->path() + "/state.qemu"; }

  std::optional<TempDir> runtime_dir_;
  std::optional<TempDir> snapshot_dir_;
  std::string kernel_;
  std::string initramfs_;
  std::unique_ptr<Engine> engine_;
};

class EngineSnapshotRoundTrip : public EngineSnapshot, public ::testing::WithParamInterface<uint64_t> {};

TEST_P(EngineSnapshotRoundTrip, RestoredGuestKeepsItsMemoryProcessesAndOpenFiles) {
  const uint64_t memory_mib = GetParam();
  auto boot_started = Clock::now();
  auto launched = engine_->launch(spec(memory_mib));
  ASSERT_TRUE(launched) << launched.error().message();
  std::unique_ptr<VmInstance> vm = std::move(*launched);
  auto agent = connect_agent(*vm);
  ASSERT_TRUE(agent);
  long boot_ms = ms_since(boot_started);

  // Before: a file in /tmp (tmpfs: it lives only in guest RAM), 16 MiB of random data there too, and a
  // process in its own session (the agent kills its session's processes when the host disconnects) that
  // holds the marker open.
  auto before = run(*agent,
                    "echo kiln-was-here > /tmp/marker; head -c 16777216 /dev/urandom > /tmp/blob; "
                    "setsid sh -c 'exec 3</tmp/marker; exec sleep 1000' </dev/null >/dev/null 2>&1 & "
                    "echo $!; md5sum /tmp/blob | cut -d' ' -f1; cut -d' ' -f1 /proc/uptime");
  ASSERT_TRUE(before) << before.error().message();
  ASSERT_TRUE(before->status.success()) << before->out;
  std::vector<std::string> lines;
  for (size_t start = 0; start < before->out.size();) {
    size_t end = before->out.find('\n', start);
    lines.push_back(before->out.substr(start, end - start));
    start = end == std::string::npos ? before->out.size() : end + 1;
  }
  ASSERT_EQ(lines.size(), 3u) << before->out;
  const std::string& daemon_pid = lines[0];
  const std::string& blob_md5 = lines[1];
  double uptime_before = std::stod(lines[2]);

  // Save: QEMU exits, so nothing of the VM (its memory included) stays on the host.
  pid_t monitor = vm->monitor_pid();
  double rss_before = rss_mib(monitor);
  auto save_started = Clock::now();
  auto saved = vm->save_state(snapshot_dir_->path());
  ASSERT_TRUE(saved) << saved.error().message();
  long save_ms = ms_since(save_started);
  EXPECT_EQ(*vm->run_state(), VmRunState::kExited);
  EXPECT_EQ(::kill(monitor, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_FALSE(some_process_mentions(runtime_dir_->path()));
  agent.reset();
  vm.reset();

  auto manifest = snapshot::read_manifest(snapshot_dir_->path());
  ASSERT_TRUE(manifest) << manifest.error().message();
  EXPECT_EQ(manifest->engine, "qemu");
  EXPECT_THAT(manifest->engine_version, ::testing::MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+"));
  EXPECT_EQ(manifest->vm.memory_mib, memory_mib);
  EXPECT_EQ(manifest->vm.cpus, 1u);
  uint64_t state_bytes = std::filesystem::file_size(state_file());
  EXPECT_EQ(manifest->files["state"].bytes, state_bytes);
  EXPECT_EQ(std::filesystem::status(state_file()).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);

  // Restore, into the same runtime dir, as the daemon would.
  VmSpec restore = spec(memory_mib);
  restore.restore_from = snapshot_dir_->path();
  auto restore_started = Clock::now();
  auto restored = engine_->launch(restore);
  ASSERT_TRUE(restored) << restored.error().message();
  long restore_ms = ms_since(restore_started);
  vm = std::move(*restored);
  EXPECT_EQ(*vm->run_state(), VmRunState::kRunning);
  // The agent sees a new host connection and answers a new HELLO.
  auto reconnect_started = Clock::now();
  agent = connect_agent(*vm);
  ASSERT_TRUE(agent);
  long reconnect_ms = ms_since(reconnect_started);
  double rss_restored = rss_mib(vm->monitor_pid());

  auto after =
      run(*agent, fmt::format("cat /tmp/marker; md5sum /tmp/blob | cut -d' ' -f1; kill -0 {0} && echo alive; "
                              "readlink /proc/{0}/fd/3; cut -d' ' -f1 /proc/uptime",
                              daemon_pid));
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_THAT(after->out,
              ::testing::StartsWith(fmt::format("kiln-was-here\n{}\nalive\n/tmp/marker\n", blob_md5)));
  double uptime_after = std::stod(after->out.substr(after->out.rfind('\n', after->out.size() - 2) + 1));
  // The guest's clock continues from where it was saved: no jump back, no jump by the time it was away.
  EXPECT_GE(uptime_after, uptime_before);
  EXPECT_LT(uptime_after, uptime_before + 60);

  auto stopped = stop_gracefully(*vm, agent.get(), 60s);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(*stopped, StopOutcome::kGraceful);

  std::printf(
      "[ figures ] %llu MiB guest under %s: boot+agent %ld ms, save %ld ms, state file %.1f MiB, "
      "restore %ld ms (+ agent HELLO %ld ms), QEMU RSS %.0f MiB before save, %.0f MiB after restore\n",
      static_cast<unsigned long long>(memory_mib), std::string(to_string(engine_->accelerator())).c_str(),
      boot_ms, save_ms, static_cast<double>(state_bytes) / (1 << 20), restore_ms, reconnect_ms, rss_before,
      rss_restored);
}

INSTANTIATE_TEST_SUITE_P(Memory, EngineSnapshotRoundTrip, ::testing::Values(256, 512),
                         [](const auto& info) { return fmt::format("{}MiB", info.param); });

TEST_F(EngineSnapshot, RefusesSnapshotsThatDoNotFitAndDamagedOnesWithoutLeavingAQemu) {
  boot_and_save(256);
  const std::string needle = runtime_dir_->path();
  auto restore_with = [&](VmSpec spec) {
    spec.restore_from = snapshot_dir_->path();
    return engine_->launch(spec);
  };

  auto bigger = restore_with(spec(512));
  ASSERT_FALSE(bigger);
  EXPECT_EQ(bigger.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(bigger.error().message(), HasSubstr("memory 256 MiB (saved) vs 512 MiB"));

  VmSpec elsewhere = spec(256);
  elsewhere.restore_from = snapshot_dir_->path() + "/nothing-here";
  auto missing = engine_->launch(elsewhere);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);

  // Keep the good state aside; damage the one in place.
  std::filesystem::copy_file(state_file(), state_file() + ".good");
  uint64_t size = std::filesystem::file_size(state_file());
  std::filesystem::resize_file(state_file(), size / 2);
  auto truncated = restore_with(spec(256));
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(truncated.error().message(), HasSubstr("is damaged"));

  // Same size, garbage after the header: only QEMU can tell, and it must not be left running.
  std::filesystem::resize_file(state_file(), size);
  {
    std::FILE* file = std::fopen(state_file().c_str(), "r+b");
    ASSERT_NE(file, nullptr);
    ASSERT_EQ(std::fseek(file, 64, SEEK_SET), 0);
    std::string garbage(std::min<uint64_t>(size - 64, 1 << 20), '\xa5');
    EXPECT_EQ(std::fwrite(garbage.data(), 1, garbage.size(), file), garbage.size());
    ASSERT_EQ(std::fclose(file), 0);
  }
  auto corrupt = restore_with(spec(256));
  ASSERT_FALSE(corrupt);
  EXPECT_THAT(corrupt.error().message(), HasSubstr("restore the VM's state"));
  std::printf("[ corrupt state ] %s: %s\n", std::string(to_string(corrupt.error().category())).c_str(),
              corrupt.error().message().c_str());
  EXPECT_FALSE(some_process_mentions(needle));

  // The failed attempts changed nothing: the intact state still restores.
  std::filesystem::rename(state_file() + ".good", state_file());
  auto restored = restore_with(spec(256));
  ASSERT_TRUE(restored) << restored.error().message();
  auto agent = connect_agent(**restored);
  ASSERT_TRUE(agent);
  EXPECT_TRUE(agent->ping(30s));
  ASSERT_TRUE((*restored)->kill());
}

TEST_F(EngineSnapshot, SaveNeedsAnEmptyDirectoryAndLeavesTheVmRunningOtherwise) {
  auto launched = engine_->launch(spec(256));
  ASSERT_TRUE(launched) << launched.error().message();
  auto agent = connect_agent(**launched);
  ASSERT_TRUE(agent);
  ASSERT_TRUE(write_file_atomic(snapshot_dir_->path() + "/old", "x"));
  auto refused = (*launched)->save_state(snapshot_dir_->path());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(refused.error().message(), HasSubstr("is not empty"));
  auto absent = (*launched)->save_state(snapshot_dir_->path() + "/absent");
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(*(*launched)->run_state(), VmRunState::kRunning);
  EXPECT_TRUE(agent->ping(30s));
}

TEST_F(EngineSnapshot, MountedShareBlocksTheSaveAndTheVmKeepsRunning) {
  auto shared = TempDir::create("kiln-snapshot-share-");
  ASSERT_TRUE(shared);
  VmSpec with_share = spec(256);
  with_share.shares = {{"kilnshare0", shared->path(), false}};
  auto launched = engine_->launch(with_share);
  ASSERT_TRUE(launched) << launched.error().message();
  auto agent = connect_agent(**launched);
  ASSERT_TRUE(agent);
  ASSERT_TRUE(agent->mount({.source = "kilnshare0",
                            .target = "/mnt/share",
                            .fstype = "9p",
                            .options = "trans=virtio,version=9p2000.L"}));
  auto refused = (*launched)->save_state(snapshot_dir_->path());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(refused.error().message(), HasSubstr("cannot save the VM's state"));
  std::printf("[ 9p ] %s\n", refused.error().message().c_str());
  // Nothing was left behind, and the guest runs on.
  EXPECT_TRUE(std::filesystem::is_empty(snapshot_dir_->path()));
  EXPECT_EQ(*(*launched)->run_state(), VmRunState::kRunning);
  EXPECT_TRUE(agent->ping(30s));
}

}  // namespace
}  // namespace kiln::engine

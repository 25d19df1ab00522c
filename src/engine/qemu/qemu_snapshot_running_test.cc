// save_running against a scripted QEMU monitor: the order of the steps (the caller's disk copy while the
// guest is stopped, the device state saved with x-ignore-shared, the guest resumed last, or for a suspend
// QEMU ended after the manifest), the manifest it writes, and that a failing step still resumes the guest.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "common/temp_dir.h"
#include "engine/qemu/fake_qemu_test_support.h"
#include "engine/qemu/qemu_snapshot.h"

namespace kiln::engine::qemu {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMemoryMib = 16;

size_t find_request(const std::vector<std::string>& requests, std::string_view text) {
  auto found = std::find_if(requests.begin(), requests.end(), [&](const std::string& request) {
    return request.find(text) != std::string::npos;
  });
  return static_cast<size_t>(found - requests.begin());
}

struct Script {
  bool running = true;          // what query-status says
  bool refuse_migrate = false;  // as QEMU does with a migration blocker (a mounted 9p share)
};

RunningSave as_clone() {
  return {.role = snapshot::kRoleTemplate, .key = "clone-key"};
}

std::function<std::string(const std::string&)> monitor_for(Script script) {
  return [script](const std::string& request) -> std::string {
    if (request.find(R"("execute":"query-version")") != std::string::npos)
      return R"({"return": {"qemu": {"major": 7, "minor": 2, "micro": 22}}})";
    if (request.find(R"("execute":"query-status")") != std::string::npos)
      return script.running ? R"({"return": {"running": true, "status": "running"}})"
                            : R"({"return": {"running": false, "status": "paused"}})";
    if (request.find(R"("execute":"migrate")") != std::string::npos) {
      if (script.refuse_migrate)
        return R"({"error": {"class": "GenericError", "desc": "Migration is disabled when VirtFS export path '/x' is mounted in the guest"}})";
      return R"({"return": {}})"
             "\r\n"
             R"({"event": "MIGRATION", "data": {"status": "completed"}, "timestamp": {}})";
    }
    return R"({"return": {}})";
  };
}

class SaveRunningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("kiln-save-running-").value());
    ram_ = UniqueFd(::memfd_create("memory-backend-memfd", MFD_CLOEXEC));
    ASSERT_TRUE(ram_);
    ASSERT_EQ(::ftruncate(ram_.get(), static_cast<off_t>(kMemoryMib << 20)), 0);
    ASSERT_EQ(::pwrite(ram_.get(), "guest", 5, 4096), 5);
    shape_.cpus = 1;
    shape_.memory_mib = kMemoryMib;
  }

  // Runs the save against a monitor following `script`; returns its result and the requests it got.
  std::pair<Result<void>, std::vector<std::string>> save(Script script,
                                                         const std::function<Result<void>()>& while_paused,
                                                         const RunningSave& how = as_clone(),
                                                         const char* monitor_seconds = "600") {
    auto pair = make_socket_pair();
    EXPECT_TRUE(pair);
    FakeQemu fake(std::move(pair->second), monitor_for(script));
    Result<void> result = ok();
    {
      auto qmp = QmpClient::handshake(std::move(pair->first), 5s);
      EXPECT_TRUE(qmp) << qmp.error().message();
      auto child = ChildProcess::spawn({.argv = {"/bin/sleep", monitor_seconds},
                                        .stdin_mode = Stdio::kNull,
                                        .stdout_mode = Stdio::kNull,
                                        .stderr_mode = Stdio::kNull});
      EXPECT_TRUE(child) << child.error().message();
      MonitorProcess monitor = MonitorProcess::spawned(std::move(*child), false);
      result = save_running(*qmp, monitor, shape_, how, dir_->path(), ram_.get(), while_paused);
      exited_ = monitor.has_exited();
    }
    fake.join();
    return {std::move(result), fake.requests()};
  }

  std::unique_ptr<TempDir> dir_;
  UniqueFd ram_;
  snapshot::VmShape shape_;
  bool exited_ = false;  // the monitor had exited when the save returned
};

TEST_F(SaveRunningTest, StopsCopiesSavesWithoutRamAndResumes) {
  std::atomic<bool> called = false;
  auto [result, requests] = save({}, [&]() -> Result<void> {
    called = true;
    return ok();
  });
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_TRUE(called);
  size_t stop = find_request(requests, R"("execute":"stop")");
  size_t capabilities = find_request(requests, R"("execute":"migrate-set-capabilities")");
  size_t migrate = find_request(requests, R"("execute":"migrate")");
  size_t cont = find_request(requests, R"("execute":"cont")");
  ASSERT_LT(cont, requests.size());
  EXPECT_LT(stop, capabilities);
  EXPECT_LT(capabilities, migrate);
  EXPECT_LT(migrate, cont);
  EXPECT_NE(requests[capabilities].find(R"({"capability":"x-ignore-shared","state":true})"),
            std::string::npos)
      << requests[capabilities];
  // A one-off template: role template, the caller's key, the RAM in its memory file.
  auto manifest = read_template_manifest(dir_->path());
  ASSERT_TRUE(manifest) << manifest.error().message();
  EXPECT_EQ(manifest->template_key, "clone-key");
  EXPECT_EQ(manifest->vm.memory_mib, kMemoryMib);
  EXPECT_EQ(manifest->files.at("memory").bytes, kMemoryMib << 20);
  UniqueFd memory(::open((dir_->path() + "/memory").c_str(), O_RDONLY | O_CLOEXEC));
  char text[5] = {};
  ASSERT_EQ(::pread(memory.get(), text, 5, 4096), 5);
  EXPECT_EQ(std::string_view(text, 5), "guest");
}

TEST_F(SaveRunningTest, ASuspendEndsQemuAfterTheManifestInsteadOfResuming) {
  // The monitor (a sleep standing in for QEMU) exits on its own soon after `quit`, as QEMU does.
  auto [result, requests] = save(
      {}, [] { return ok(); }, {.role = snapshot::kRoleSuspendMemory, .end_monitor = true}, "3");
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_TRUE(exited_);
  EXPECT_EQ(find_request(requests, R"("execute":"cont")"), requests.size());
  size_t migrate = find_request(requests, R"("execute":"migrate")");
  size_t quit = find_request(requests, R"("execute":"quit")");
  ASSERT_LT(quit, requests.size());
  EXPECT_LT(migrate, quit);
  auto manifest = snapshot::read_manifest(dir_->path());
  ASSERT_TRUE(manifest) << manifest.error().message();
  EXPECT_EQ(manifest->role, "suspend-memory");
  EXPECT_EQ(manifest->files.at("memory").bytes, kMemoryMib << 20);
  // Restorable into the same machine: its memory file is what the restored VM maps. (The scripted monitor
  // streams nothing; a stream's magic stands in for QEMU's device state.)
  ASSERT_TRUE(write_file_atomic(dir_->path() + "/state.qemu", "QEVM"));
  manifest->files.at("state").bytes = 4;
  ASSERT_TRUE(snapshot::write_manifest(dir_->path(), *manifest));
  VmSpec spec{.cpus = 1, .memory_mib = kMemoryMib, .restore_from = dir_->path()};
  auto restore = prepare_restore(spec);
  ASSERT_TRUE(restore) << restore.error().message();
  EXPECT_TRUE(restore->ignore_shared);
  EXPECT_EQ(restore->memory_path, dir_->path() + "/memory");
  // ... and refused, before any QEMU starts, when the file is not the VM's RAM size.
  ASSERT_EQ(::truncate((dir_->path() + "/memory").c_str(), 4096), 0);
  auto damaged = prepare_restore(spec);
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error().category(), ErrorCategory::kFailedPrecondition);
}

TEST_F(SaveRunningTest, AFailedSuspendResumesTheGuestAndKeepsQemu) {
  auto [result, requests] = save({.refuse_migrate = true}, [] { return ok(); },
                                 {.role = snapshot::kRoleSuspendMemory, .end_monitor = true});
  ASSERT_FALSE(result);
  EXPECT_FALSE(exited_);
  EXPECT_LT(find_request(requests, R"("execute":"cont")"), requests.size());
  EXPECT_EQ(find_request(requests, R"("execute":"quit")"), requests.size());
  EXPECT_FALSE(snapshot::read_manifest(dir_->path()));
}

TEST_F(SaveRunningTest, AFailureWhilePausedResumesTheGuestAndSavesNothing) {
  auto [result, requests] = save({}, [] { return Result<void>(Error::internal("disk full")); });
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("disk full"), std::string::npos);
  EXPECT_EQ(find_request(requests, R"("execute":"migrate")"), requests.size());
  size_t cont = find_request(requests, R"("execute":"cont")");
  ASSERT_LT(cont, requests.size());
  EXPECT_GT(cont, find_request(requests, R"("execute":"stop")"));
  EXPECT_FALSE(read_template_manifest(dir_->path()));
}

TEST_F(SaveRunningTest, AMigrationBlockerIsRefusedAndTheGuestResumes) {
  auto [result, requests] = save({.refuse_migrate = true}, [] { return ok(); });
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(result.error().message().find("VirtFS"), std::string::npos) << result.error().message();
  EXPECT_LT(find_request(requests, R"("execute":"cont")"), requests.size());
  EXPECT_FALSE(read_template_manifest(dir_->path()));
}

TEST_F(SaveRunningTest, AGuestTheCallerPausedStaysPaused) {
  auto [result, requests] = save({.running = false}, [] { return ok(); });
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(find_request(requests, R"("execute":"cont")"), requests.size());
}

TEST_F(SaveRunningTest, ANonEmptyDirectoryIsRefusedBeforeTheGuestStops) {
  ASSERT_TRUE(write_file_atomic(dir_->path() + "/left-over", "x"));
  auto [result, requests] = save({}, [] { return ok(); });
  ASSERT_FALSE(result);
  EXPECT_EQ(find_request(requests, R"("execute":"stop")"), requests.size());
}

}  // namespace
}  // namespace kiln::engine::qemu

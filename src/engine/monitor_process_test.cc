#include "engine/monitor_process.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "common/unique_fd.h"

namespace kiln::engine {
namespace {

// A child running `sleep`. Returns once `sleep` itself runs: before that /proc/PID/cmdline is this test's,
// then sh's, and for a moment inside each exec it reads empty (the new image's arguments are not set up
// yet); adopt() rightly refuses all of those. No inherited stdout/stderr: a sleeper leaked by a failed
// test must not hold ctest's output pipe (ctest would wait for it until the test's timeout).
ChildProcess spawn_sleeper(const std::string& marker) {
  ChildProcess child = ChildProcess::spawn({.argv = {"/bin/sh", "-c", "exec sleep 600", marker},
                                            .stdin_mode = Stdio::kNull,
                                            .stdout_mode = Stdio::kNull,
                                            .stderr_mode = Stdio::kNull})
                           .value();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    auto cmdline = read_file("/proc/" + std::to_string(child.pid()) + "/cmdline", 4096);
    if (cmdline && cmdline->starts_with(std::string("sleep\0", 6))) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling for exec, not guessing a duration
  }
  return child;
}

TEST(MonitorProcessTest, AdoptChecksTheCommandLine) {
  ChildProcess child = spawn_sleeper("kiln-test-marker-1");
  // sh execs sleep, which drops the marker argument: wait for that, then the marker no longer matches.
  auto adopted = MonitorProcess::adopt(child.pid(), "sleep");
  ASSERT_TRUE(adopted) << adopted.error().message();
  EXPECT_EQ(adopted->pid(), child.pid());
  EXPECT_FALSE(adopted->has_exited());
  auto wrong = MonitorProcess::adopt(child.pid(), "qemu-system-x86_64 -name guest=other");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().category(), ErrorCategory::kNotFound);
}

TEST(MonitorProcessTest, AdoptedProcessCanBeKilledAndIsSeenExiting) {
  ChildProcess child = spawn_sleeper("x");
  auto adopted = MonitorProcess::adopt(child.pid(), "sleep").value();
  ASSERT_TRUE(adopted.kill());
  EXPECT_TRUE(adopted.has_exited());
  EXPECT_FALSE(adopted.exit_status());  // someone else reaps an adopted process
  EXPECT_TRUE(child.wait().value().is_signaled());
}

TEST(MonitorProcessTest, GoneProcessIsNotFound) {
  ChildProcess child = spawn_sleeper("x");
  pid_t pid = child.pid();
  ASSERT_TRUE(child.send_signal(9));
  ASSERT_TRUE(child.wait());
  auto adopted = MonitorProcess::adopt(pid, "sleep");
  ASSERT_FALSE(adopted);
  EXPECT_EQ(adopted.error().category(), ErrorCategory::kNotFound);
}

TEST(MonitorProcessTest, SpawnedChildOutlivingItsOwnerIsReleasedNotKilled) {
  pid_t pid = 0;
  {
    auto monitor = MonitorProcess::spawned(spawn_sleeper("x"), /*outlives_owner=*/true);
    pid = monitor.pid();
  }
  EXPECT_EQ(::kill(pid, 0), 0);  // still running
  auto adopted = MonitorProcess::adopt(pid, "sleep").value();
  ASSERT_TRUE(adopted.kill());
  (void)::waitpid(pid, nullptr, 0);  // our child after all: reap it
}

TEST(MonitorProcessTest, SpawnedChildIsKilledWithItsOwner) {
  pid_t pid = 0;
  {
    auto monitor = MonitorProcess::spawned(spawn_sleeper("x"), /*outlives_owner=*/false);
    pid = monitor.pid();
    EXPECT_TRUE(monitor.wait_for(std::chrono::milliseconds(10)).value() == false);
  }
  EXPECT_NE(::kill(pid, 0), 0);
}

}  // namespace
}  // namespace kiln::engine

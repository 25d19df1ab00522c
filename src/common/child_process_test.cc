#include "common/child_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "common/temp_dir.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

// A zombie still exists for kill(0); a reaped child does not. So "gone" proves it was reaped.
bool reaped(pid_t pid) {
  int status;
  return !process_exists(pid) && ::waitpid(pid, &status, WNOHANG) < 0;
}

int count_open_fds() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count;
}

TEST(ChildProcess, ReportsExitCode) {
  auto child = ChildProcess::spawn({.argv = {"sh", "-c", "exit 7"}});
  ASSERT_TRUE(child) << child.error().message();
  auto status = child->wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, ExitStatus::exited(7));
  EXPECT_EQ(status->shell_code(), 7);
  EXPECT_EQ(status->describe(), "exited with code 7");
}

TEST(ChildProcess, ReportsDeathBySignalLikeAShell) {
  auto child = ChildProcess::spawn({.argv = {"sh", "-c", "kill -TERM $$"}});
  ASSERT_TRUE(child);
  auto status = child->wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->is_signaled());
  EXPECT_EQ(status->signal(), SIGTERM);
  EXPECT_EQ(status->shell_code(), 143);
  EXPECT_NE(status->describe().find("killed by signal 15"), std::string::npos);
}

TEST(ChildProcess, ChildKilledFromOutsideIsReapedWithItsSignal) {
  auto child = ChildProcess::spawn({.argv = {"sleep", "30"}});
  ASSERT_TRUE(child);
  pid_t pid = child->pid();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto status = child->wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal(), SIGKILL);
  EXPECT_EQ(status->shell_code(), 137);
  EXPECT_TRUE(reaped(pid));
}

TEST(ChildProcess, DestructorKillsAndReapsARunningChild) {
  pid_t pid;
  {
    auto child = ChildProcess::spawn({.argv = {"sleep", "30"}});
    ASSERT_TRUE(child);
    pid = child->pid();
    ASSERT_TRUE(process_exists(pid));
  }
  EXPECT_TRUE(reaped(pid));
}

TEST(ChildProcess, MovedFromObjectDoesNotKillTheChild) {
  auto child = ChildProcess::spawn({.argv = {"sh", "-c", "exit 3"}});
  ASSERT_TRUE(child);
  ChildProcess owner = std::move(*child);
  auto status = owner.wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->code(), 3);
}

TEST(ChildProcess, WaitForTimesOutThenTerminateEscalates) {
  // The shell ignores SIGTERM, so terminate() must fall back to SIGKILL after the grace period.
  auto child = ChildProcess::spawn({.argv = {"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}});
  ASSERT_TRUE(child);
  auto early = child->wait_for(50ms);
  ASSERT_TRUE(early);
  EXPECT_FALSE(early->has_value());
  auto status = child->terminate(200ms);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal(), SIGKILL);
}

TEST(ChildProcess, MissingBinaryIsAClearError) {
  auto child = ChildProcess::spawn({.argv = {"/nonexistent/kiln-test-binary"}});
  ASSERT_FALSE(child);
  EXPECT_EQ(child.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(child.error().message(), "exec /nonexistent/kiln-test-binary: No such file or directory");
}

TEST(ChildProcess, BadWorkingDirectoryIsAClearError) {
  auto child = ChildProcess::spawn({.argv = {"true"}, .cwd = "/nonexistent-dir"});
  ASSERT_FALSE(child);
  EXPECT_NE(child.error().message().find("chdir"), std::string::npos);
}

TEST(ChildProcess, DoesNotLeakDescriptorsIntoTheChildOrTheParent) {
  int before = count_open_fds();
  // The child lists its own fds: only 0, 1, 2 and the fd ls itself opens for the directory.
  auto output = run_command({"sh", "-c", "ls /proc/self/fd | wc -l"});
  ASSERT_TRUE(output);
  EXPECT_LE(std::stoi(output->stdout_text), 4);
  EXPECT_EQ(count_open_fds(), before);
}

TEST(ChildProcess, PassesChosenDescriptors) {
  auto pipe = make_pipe();
  ASSERT_TRUE(pipe);
  auto child = ChildProcess::spawn(
      {.argv = {"sh", "-c", "echo passed >&5"}, .pass_fds = {{pipe->write_end.get(), 5}}});
  ASSERT_TRUE(child);
  pipe->write_end.reset();
  auto text = read_to_end(pipe->read_end.get());
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "passed\n");
  EXPECT_TRUE(child->wait()->success());
}

// Two descriptors that swap numbers: each entry's source is the other's target.
TEST(ChildProcess, PassedDescriptorsMayTradePlaces) {
  auto first = make_pipe();
  auto second = make_pipe();
  ASSERT_TRUE(first && second);
  int a = first->write_end.get();
  int b = second->write_end.get();
  auto child =
      ChildProcess::spawn({.argv = {"sh", "-c", fmt::format("echo to-first >&{}; echo to-second >&{}", b, a)},
                           .pass_fds = {{a, b}, {b, a}}});
  ASSERT_TRUE(child) << child.error().message();
  first->write_end.reset();
  second->write_end.reset();
  EXPECT_EQ(*read_to_end(first->read_end.get()), "to-first\n");
  EXPECT_EQ(*read_to_end(second->read_end.get()), "to-second\n");
  EXPECT_TRUE(child->wait()->success());
}

TEST(ChildProcess, EnvironmentAndWorkingDirectory) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  SpawnOptions options{.argv = {"/bin/sh", "-c", "echo \"$GREETING\"; pwd"},
                       .env = std::vector<std::string>{"GREETING=hi"},
                       .cwd = dir->path(),
                       .stdout_mode = Stdio::kPipe};
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child);
  auto text = read_to_end(child->stdout_pipe().get());
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "hi\n" + dir->path() + "\n");
  EXPECT_TRUE(child->wait()->success());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ChildProcess, PrivateBindsAreTheChildsAloneAndReadOnlyWhenAsked) {
  if (::geteuid() != 0) GTEST_SKIP() << "private binds need root";
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  std::string source = dir->path() + "/source";
  std::string writable = dir->path() + "/writable";
  std::string locked = dir->path() + "/locked";
  for (const auto& path : {source, writable, locked}) ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  std::ofstream(source + "/file") << "from source\n";
  SpawnOptions options{.argv = {"/bin/sh", "-c",
                                "cat writable/file && echo new > writable/made && cat locked/file && "
                                "{ echo no > locked/refused; } 2>/dev/null || echo refused"},
                       .cwd = dir->path(),
                       .stdout_mode = Stdio::kPipe,
                       .private_binds = {{.source = source, .target = writable},
                                         {.source = source, .target = locked, .read_only = true}}};
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child) << child.error().message();
  auto text = read_to_end(child->stdout_pipe().get());
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "from source\nfrom source\nrefused\n");
  EXPECT_TRUE(child->wait()->success());
  // The child's write went through to the source; the host's own view of the targets never changed.
  EXPECT_EQ(read_file(source + "/made"), "new\n");
  EXPECT_FALSE(std::ifstream(writable + "/file").good());
  EXPECT_FALSE(std::ifstream(locked + "/file").good());
}

TEST(ChildProcess, AFailedPrivateBindNamesItsSource) {
  if (::geteuid() != 0) GTEST_SKIP() << "private binds need root";
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  auto child = ChildProcess::spawn(
      {.argv = {"true"}, .private_binds = {{.source = dir->path() + "/missing", .target = dir->path()}}});
  ASSERT_FALSE(child);
  EXPECT_NE(child.error().message().find("bind-mount " + dir->path() + "/missing for true"),
            std::string::npos)
      << child.error().message();
}

TEST(ChildProcess, PrivateBindsAddedWhileItRunsAreItsAloneAllOrNone) {
  if (::geteuid() != 0) GTEST_SKIP() << "private binds need root";
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  std::string source = dir->path() + "/source";
  std::string writable = dir->path() + "/writable";
  std::string locked = dir->path() + "/locked";
  for (const auto& path : {source, writable, locked}) ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  std::ofstream(source + "/file") << "from source\n";
  // Waits for a line on stdin after each step, so the binds are added while it runs.
  SpawnOptions options{.argv = {"/bin/sh", "-c",
                                "read step; ls writable; echo -; read step; cat writable/file && echo new > "
                                "writable/made && cat locked/file && "
                                "{ echo no > locked/refused; } 2>/dev/null || echo refused"},
                       .cwd = dir->path(),
                       .stdin_mode = Stdio::kPipe,
                       .stdout_mode = Stdio::kPipe,
                       .private_mount_namespace = true};
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child) << child.error().message();
  UniqueFd mount_namespace(
      ::open(fmt::format("/proc/{}/ns/mnt", child->pid()).c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(mount_namespace);

  // The second bind's target is missing: the first, already made, is undone.
  auto failed = add_private_binds(
      mount_namespace.get(),
      {{.source = source, .target = writable}, {.source = source, .target = dir->path() + "/none"}});
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("bind " + source + " over " + dir->path() + "/none"),
            std::string::npos)
      << failed.error().message();
  failed =
      add_private_binds(mount_namespace.get(), {{.source = dir->path() + "/missing", .target = writable}});
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find(dir->path() + "/missing"), std::string::npos)
      << failed.error().message();
  ASSERT_TRUE(write_all(child->stdin_pipe().get(), "1\n"));
  char empty[2] = {};
  ASSERT_EQ(::read(child->stdout_pipe().get(), empty, sizeof empty), 2);
  EXPECT_EQ(std::string(empty, 2), "-\n") << "a bind of the failed call was left in place";

  auto added = add_private_binds(
      mount_namespace.get(),
      {{.source = source, .target = writable}, {.source = source, .target = locked, .read_only = true}});
  ASSERT_TRUE(added) << added.error().message();
  ASSERT_TRUE(write_all(child->stdin_pipe().get(), "2\n"));
  auto text = read_to_end(child->stdout_pipe().get());
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "from source\nfrom source\nrefused\n");
  EXPECT_TRUE(child->wait()->success());
  EXPECT_EQ(read_file(source + "/made"), "new\n");
  // The host's own view of the targets never changed.
  EXPECT_FALSE(std::ifstream(writable + "/file").good());
  EXPECT_FALSE(std::ifstream(locked + "/file").good());
}

TEST(RunCommand, LargeOutputOnBothStreamsDoesNotDeadlock) {
  // 1 MiB on stdout and stderr each: larger than a pipe buffer, so sequential reads would hang.
  auto output = run_command({"sh", "-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"});
  ASSERT_TRUE(output);
  EXPECT_EQ(output->stdout_text.size(), 1048576u);
  EXPECT_EQ(output->stderr_text.size(), 1048576u);
}

TEST(RunCommand, FeedsInput) {
  std::string input(300000, 'k');
  auto output = run_command({"wc", "-c"}, input);
  ASSERT_TRUE(output);
  EXPECT_EQ(std::stoi(output->stdout_text), 300000);
}

TEST(RunCommand, CheckedFailureCarriesStderr) {
  auto result = run_command_checked({"sh", "-c", "echo boom >&2; exit 2"});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message(), "sh exited with code 2: boom");
}

}  // namespace
}  // namespace kiln

// kiln-agent on the host, over a socketpair, driven by the real host client: what a user of `kiln run` or
// `docker run` would see, without a VM. The agent under test is the sanitized build.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <random>

#include "agent/agent_test_support.h"
#include "agent/spawn.h"
#include "common/sha256.h"
#include "common/temp_dir.h"

namespace kiln::agent {
namespace {

using testing::launch_agent;
using testing::run;
using testing::RunInput;

constexpr auto kTimeout = std::chrono::seconds(30);
constexpr size_t kEightMiB = 8u << 20;

std::string random_bytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& byte : out) byte = static_cast<char>(rng());
  return out;
}

class AgentLoopback : public testing::ConnectedAgentTest {
 protected:
  testing::RunOutput run_ok(const ProcessSpec& spec, const RunInput& input = {}) {
    auto output = run(*connection_, spec, input);
    EXPECT_TRUE(output.has_value()) << output.error().message();
    return output ? std::move(output).value() : testing::RunOutput{};
  }
};

TEST_F(AgentLoopback, HandshakeReportsVersionAndCapabilities) {
  EXPECT_EQ(connection_->agent_info().version, kProtocolVersion);
  EXPECT_TRUE(connection_->agent_info().agent.starts_with("kiln-agent "));
  EXPECT_NE(std::find(connection_->agent_info().capabilities.begin(),
                      connection_->agent_info().capabilities.end(), "tty"),
            connection_->agent_info().capabilities.end());
  EXPECT_TRUE(connection_->has_capability("mount"));
  EXPECT_TRUE(connection_->has_capability("root_disk"));
  EXPECT_FALSE(connection_->agent_info().root.has_value()) << "no root disk outside a VM";
  EXPECT_TRUE(connection_->ping(kTimeout).has_value());
}

TEST_F(AgentLoopback, SetClockIsRefusedOutsideAGuestAndTheSessionGoesOn) {
  EXPECT_TRUE(connection_->has_capability("clock"));
  auto set = connection_->set_clock(kTimeout);
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().category(), ErrorCategory::kUnsupported) << set.error().message();
  EXPECT_TRUE(connection_->ping(kTimeout).has_value());
}

TEST_F(AgentLoopback, SetHostnameIsRefusedOutsideAGuestAndBadNamesNeverLeave) {
  EXPECT_TRUE(connection_->has_capability("hostname"));
  auto set = connection_->set_hostname("web-1", kTimeout);
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().category(), ErrorCategory::kUnsupported) << set.error().message();
  auto bad = connection_->set_hostname("../etc", kTimeout);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_TRUE(connection_->ping(kTimeout).has_value());
}

TEST_F(AgentLoopback, CloneInitIsRefusedOutsideAGuestAndBadValuesNeverLeave) {
  EXPECT_TRUE(connection_->has_capability("clone_init"));
  auto init = connection_->clone_init(
      {.hostname = "clone-1", .machine_id = "00112233445566778899aabbccddeeff"}, kTimeout);
  ASSERT_FALSE(init);
  EXPECT_EQ(init.error().category(), ErrorCategory::kUnsupported) << init.error().message();
  for (CloneInitRequest bad : {CloneInitRequest{.seed = std::string(16, 'x')},
                               CloneInitRequest{.hostname = "-x"}, CloneInitRequest{.machine_id = "abc"}}) {
    auto refused = connection_->clone_init(bad, kTimeout);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().category(), ErrorCategory::kInvalidArgument) << refused.error().message();
  }
  EXPECT_TRUE(connection_->take_agent_errors().empty());
  EXPECT_TRUE(connection_->ping(kTimeout).has_value());
}

TEST_F(AgentLoopback, RunsACommandAndCapturesStdout) {
  auto output = run_ok({.argv = {"uname", "-s"}});
  EXPECT_EQ(output.status, ExitStatus::exited(0));
  EXPECT_EQ(output.out, "Linux\n");
  EXPECT_EQ(output.err, "");
}

TEST_F(AgentLoopback, ReportsExitCodes) {
  EXPECT_EQ(run_ok({.argv = {"sh", "-c", "exit 7"}}).status, ExitStatus::exited(7));
  EXPECT_EQ(run_ok({.argv = {"true"}}).status, ExitStatus::exited(0));
}

TEST_F(AgentLoopback, ReportsSignalDeath) {
  EXPECT_EQ(run_ok({.argv = {"sh", "-c", "kill -TERM $$"}}).status, ExitStatus::signaled(SIGTERM));
}

TEST_F(AgentLoopback, KeepsStdoutAndStderrApart) {
  auto output = run_ok({.argv = {"sh", "-c", "echo out; echo err >&2; echo out2"}});
  EXPECT_EQ(output.out, "out\nout2\n");
  EXPECT_EQ(output.err, "err\n");
}

TEST_F(AgentLoopback, EightMiBThroughStdinHashesLikeTheHost) {
  std::string data = random_bytes(kEightMiB, 1);
  auto output = run_ok({.argv = {"sha256sum"}}, RunInput{.stdin_data = data});
  EXPECT_EQ(output.status, ExitStatus::exited(0));
  EXPECT_EQ(output.out, sha256_hex(data) + "  -\n");
}

TEST_F(AgentLoopback, EightMiBOnStdoutAndStderrArriveIntact) {
  // tee copies one random stream to both: each side must carry exactly the same 8 MiB.
  auto output = run_ok({.argv = {"sh", "-c", "head -c 8388608 /dev/urandom | tee /dev/stderr"}});
  EXPECT_EQ(output.status, ExitStatus::exited(0));
  ASSERT_EQ(output.out.size(), kEightMiB);
  ASSERT_EQ(output.err.size(), kEightMiB);
  EXPECT_TRUE(output.out == output.err);
}

TEST_F(AgentLoopback, OutputBeforeExitIsNeverLost) {
  for (int i = 0; i < 20; ++i) {
    auto output = run_ok({.argv = {"sh", "-c", "seq 1 2000; echo last >&2"}});
    ASSERT_EQ(output.out.size(), 8893u) << "round " << i;
    ASSERT_EQ(output.err, "last\n");
  }
}

TEST_F(AgentLoopback, TtyHasATerminalOfTheGivenSize) {
  auto output = run_ok({.argv = {"sh", "-c", "tty && stty size"}, .tty = true, .size = {33, 101}});
  EXPECT_EQ(output.status, ExitStatus::exited(0));
  EXPECT_TRUE(output.out.starts_with("/dev/pts/")) << output.out;
  EXPECT_NE(output.out.find("33 101"), std::string::npos) << output.out;
  EXPECT_EQ(output.err, "");  // stdout and stderr are one terminal
}

TEST_F(AgentLoopback, TtyResizeReachesTheProcess) {
  auto id = connection_->start_process(
      {.argv = {"sh", "-c", "read line; stty size"}, .tty = true, .size = {24, 80}});
  ASSERT_TRUE(id.has_value()) << id.error().message();
  // Frames are handled in order: the resize lands before the line that lets the shell go on.
  ASSERT_TRUE(connection_->resize(*id, TtySize{50, 120}).has_value());
  ASSERT_TRUE(connection_->write_stdin(*id, "go\n").has_value());
  auto out = testing::memory_file();
  ASSERT_TRUE(out.has_value());
  AttachOptions options{.stdin_fd = -1, .stdout_fd = out->get()};
  auto status = attach_process(*connection_, *id, options);
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::exited(0));
  auto text = testing::contents(out->get());
  EXPECT_NE(text->find("50 120"), std::string::npos) << *text;
}

TEST_F(AgentLoopback, TtyStdinEofEndsCat) {
  auto output = run_ok({.argv = {"cat"}, .tty = true}, RunInput{.stdin_data = std::string("hello\n")});
  EXPECT_EQ(output.status, ExitStatus::exited(0));
  EXPECT_NE(output.out.find("hello"), std::string::npos);
}

TEST_F(AgentLoopback, RunsManyProcessesConcurrentlyOnOneConnection) {
  // All start before any is attached, so their output interleaves on the channel and waits in the client.
  std::vector<ProcessId> ids;
  for (int i = 0; i < 8; ++i) {
    auto id = connection_->start_process(
        {.argv = {"sh", "-c", fmt::format("head -c 1000000 /dev/zero | tr '\\0' '{}'; exit {}", i, i)}});
    ASSERT_TRUE(id.has_value()) << id.error().message();
    ids.push_back(*id);
  }
  // Attach in reverse order: the others keep running, bounded by their windows.
  for (int i = 7; i >= 0; --i) {
    auto out = testing::memory_file();
    ASSERT_TRUE(out.has_value());
    auto status = attach_process(*connection_, ids[static_cast<size_t>(i)], {.stdout_fd = out->get()});
    ASSERT_TRUE(status.has_value()) << status.error().message();
    EXPECT_EQ(*status, ExitStatus::exited(i));
    auto text = testing::contents(out->get());
    ASSERT_EQ(text->size(), 1000000u);
    EXPECT_EQ(text->find_first_not_of(static_cast<char>('0' + i)), std::string::npos);
  }
}

TEST_F(AgentLoopback, MissingBinaryIsNotFoundLikeAShell) {
  auto id = connection_->start_process({.argv = {"kiln-no-such-binary"}});
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(id.error().message(), "exec kiln-no-such-binary: No such file or directory");
  EXPECT_EQ(exit_code_for_start_error(id.error()), 127);
  // The connection is fine afterwards.
  EXPECT_EQ(run_ok({.argv = {"true"}}).status, ExitStatus::exited(0));
}

TEST_F(AgentLoopback, NonExecutableFileIsPermissionDenied) {
  auto dir = TempDir::create("kiln-agent-test-");
  ASSERT_TRUE(dir.has_value());
  std::string path = dir->path() + "/not-executable";
  ASSERT_TRUE(write_file_atomic(path, "#!/bin/sh\n", 0644).has_value());
  auto id = connection_->start_process({.argv = {path}});
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().category(), ErrorCategory::kPermissionDenied);
  EXPECT_EQ(id.error().message(), fmt::format("exec {}: Permission denied", path));
  EXPECT_EQ(exit_code_for_start_error(id.error()), 126);
}

TEST_F(AgentLoopback, NotAnExecutableFormatIsReported) {
  auto dir = TempDir::create("kiln-agent-test-");
  ASSERT_TRUE(dir.has_value());
  std::string path = dir->path() + "/garbage";
  ASSERT_TRUE(write_file_atomic(path, "\x01\x02 not an ELF and no #!", 0755).has_value());
  auto id = connection_->start_process({.argv = {path}});
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().message(), fmt::format("exec {}: Exec format error", path));
  EXPECT_EQ(exit_code_for_start_error(id.error()), 126);
}

TEST_F(AgentLoopback, BadWorkingDirectoryIsReported) {
  auto id = connection_->start_process({.argv = {"true"}, .cwd = "/kiln/no/such/dir"});
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(id.error().message(), "chdir /kiln/no/such/dir: No such file or directory");
}

TEST_F(AgentLoopback, EnvironmentCwdAndUser) {
  auto output = run_ok({.argv = {"sh", "-c", "pwd; echo $FOO; echo $PATH; id -u; id -g"},
                        .env = std::vector<std::string>{"FOO=bar"},
                        .cwd = "/tmp",
                        .uid = 65534,
                        .gid = 65534});
  EXPECT_EQ(output.out, fmt::format("/tmp\nbar\n{}\n65534\n65534\n", kDefaultPath));
}

TEST_F(AgentLoopback, DefaultEnvironmentIsJustPath) {
  auto output = run_ok({.argv = {"env"}});
  EXPECT_EQ(output.out, fmt::format("PATH={}\n", kDefaultPath));
}

TEST_F(AgentLoopback, SignalFromTheApiKillsTheProcess) {
  auto id = connection_->start_process({.argv = {"sleep", "100"}});
  ASSERT_TRUE(id.has_value());
  ASSERT_TRUE(connection_->send_signal(*id, SIGINT).has_value());
  auto status = attach_process(*connection_, *id, {});
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::signaled(SIGINT));
}

TEST_F(AgentLoopback, SignalFromTheSignalFdIsForwarded) {
  // As the CLI does it: SIGINT blocked and read from a signalfd. raise() leaves it pending for attach.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &set, &old), 0);
  UniqueFd signals(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  ASSERT_TRUE(signals.valid());
  auto id = connection_->start_process({.argv = {"sleep", "100"}});
  ASSERT_TRUE(id.has_value());
  ASSERT_EQ(::raise(SIGINT), 0);
  auto status = attach_process(*connection_, *id, {.signal_fd = signals.get()});
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &old, nullptr), 0);
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::signaled(SIGINT));
}

TEST_F(AgentLoopback, ClosedStdoutWhileRunningIsFine) {
  auto output = run_ok({.argv = {"sh", "-c", "echo before; exec >&-; sleep 0.2; exit 3"}});
  EXPECT_EQ(output.status, ExitStatus::exited(3));
  EXPECT_EQ(output.out, "before\n");
}

// A pipe whose reader is gone, as `head -1` leaves `kiln vm run -- yes` once it has its line. SIGPIPE is
// ignored meanwhile, as `kiln` ignores it, so the write that finds the pipe closed fails with EPIPE.
class ClosedPipe {
 public:
  ClosedPipe() {
    int ends[2];
    EXPECT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    (void)::close(ends[0]);
    write_end_ = UniqueFd(ends[1]);
    old_ = ::signal(SIGPIPE, SIG_IGN);
  }
  ~ClosedPipe() { (void)::signal(SIGPIPE, old_); }
  int fd() const { return write_end_.get(); }

 private:
  UniqueFd write_end_;
  sighandler_t old_;
};

TEST_F(AgentLoopback, AGoneLocalReaderGivesTheProcessSigpipe) {
  ClosedPipe stdout_pipe;
  auto id = connection_->start_process({.argv = {"yes"}});
  ASSERT_TRUE(id.has_value()) << id.error().message();
  auto status = attach_process(*connection_, *id, {.stdout_fd = stdout_pipe.fd()});
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::signaled(SIGPIPE));  // as `yes | head -1` ends locally
}

TEST_F(AgentLoopback, AProcessIgnoringSigpipeIsKilledOnceItsReaderIsGone) {
  ClosedPipe stdout_pipe;
  auto id = connection_->start_process({.argv = {"sh", "-c", "trap '' PIPE; while :; do echo y; done"}});
  ASSERT_TRUE(id.has_value()) << id.error().message();
  auto status = attach_process(*connection_, *id, {.stdout_fd = stdout_pipe.fd()});
  ASSERT_TRUE(status.has_value()) << status.error().message();
  EXPECT_EQ(*status, ExitStatus::signaled(SIGKILL));
}

TEST_F(AgentLoopback, BackgroundChildDoesNotDelayTheExit) {
  // The background sleep keeps the pipes open; the exit is still reported once the shell is gone.
  auto output = run_ok({.argv = {"sh", "-c", "sleep 3 & echo started"}});
  EXPECT_EQ(output.status, ExitStatus::exited(0));
  EXPECT_EQ(output.out, "started\n");
}

TEST_F(AgentLoopback, MountTargetsMustBeAbsoluteWithoutDotDot) {
  for (const char* target : {"mnt/data", "", "/mnt/../etc", "/"}) {
    auto mounted = connection_->mount({.source = "kilnshare0", .target = target, .fstype = "9p"});
    ASSERT_FALSE(mounted.has_value()) << target;
    EXPECT_EQ(mounted.error().category(), ErrorCategory::kInvalidArgument) << target;
    EXPECT_NE(mounted.error().message().find("MOUNT target"), std::string::npos) << mounted.error().message();
  }
  auto unmounted = connection_->unmount("relative");
  ASSERT_FALSE(unmounted.has_value());
  EXPECT_EQ(unmounted.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_TRUE(connection_->ping(kTimeout).has_value());
}

// The agent under test runs on the host as root: a well-formed MOUNT must not touch this machine.
TEST_F(AgentLoopback, AnAgentThatIsNotPid1MountsNothing) {
  std::string target = fmt::format("/tmp/kiln-mount-test-{}/must-not-exist", ::getpid());
  auto mounted = connection_->mount({.source = "tmpfs", .target = target, .fstype = "tmpfs"});
  ASSERT_FALSE(mounted.has_value());
  EXPECT_EQ(mounted.error().category(), ErrorCategory::kUnsupported);
  EXPECT_NE(::access(target.c_str(), F_OK), 0) << "the agent created the target on the host";
  EXPECT_EQ(connection_->unmount("/tmp").error().category(), ErrorCategory::kUnsupported);
}

TEST_F(AgentLoopback, LostConnectionIsUnavailable) {
  auto id = connection_->start_process({.argv = {"sleep", "100"}});
  ASSERT_TRUE(id.has_value());
  ASSERT_TRUE(agent_->send_signal(SIGKILL).has_value());
  auto status = attach_process(*connection_, *id, {});
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(status.error().message(), "lost connection to the VM's agent");
  EXPECT_EQ(agent_->wait()->signal(), SIGKILL);
}

TEST_F(AgentLoopback, ShutdownKillsProcessesAndIsAcknowledged) {
  auto id = connection_->start_process({.argv = {"sleep", "100"}});
  ASSERT_TRUE(id.has_value());
  auto done = connection_->shutdown(false, kTimeout);
  ASSERT_TRUE(done.has_value()) << done.error().message();
  auto status = agent_->wait_for(kTimeout);
  ASSERT_TRUE(status.has_value() && status->has_value());
  EXPECT_EQ(**status, ExitStatus::exited(0));
}

// The shipped static binary behaves the same; a short smoke run on it.
TEST(AgentStaticBinary, RunsCommandsAndTerminals) {
  auto launched = launch_agent(testing::static_agent_binary());
  ASSERT_TRUE(launched.has_value()) << launched.error().message();
  auto connection = AgentConnection::connect(std::move(launched->host_end), kTimeout);
  ASSERT_TRUE(connection.has_value()) << connection.error().message();
  auto output = run(**connection, {.argv = {"sh", "-c", "echo hi; echo oops >&2; exit 4"}});
  ASSERT_TRUE(output.has_value()) << output.error().message();
  EXPECT_EQ(output->status, ExitStatus::exited(4));
  EXPECT_EQ(output->out, "hi\n");
  EXPECT_EQ(output->err, "oops\n");
  auto tty = run(**connection, {.argv = {"stty", "size"}, .tty = true, .size = {10, 20}});
  ASSERT_TRUE(tty.has_value()) << tty.error().message();
  EXPECT_EQ(tty->out, "10 20\r\n");
  connection->reset();
  EXPECT_EQ(*launched->process.wait(), ExitStatus::exited(0));
}

}  // namespace
}  // namespace kiln::agent

// AgentHub against a real (sanitized) kiln-agent on a socketpair: exec sessions bridged to client sockets the
// way kilnd bridges Docker API connections, several at once, plus one-shot calls on the same channel.
#include "agent/client/agent_hub.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <future>
#include <thread>

#include "agent/agent_test_support.h"
#include "common/json.h"

namespace kiln::agent {
namespace {

using testing::launch_agent;
using testing::sanitized_agent_binary;

constexpr auto kTimeout = std::chrono::seconds(60);

struct Demuxed {
  std::string out;
  std::string err;
};

// Splits a Docker stdcopy stream (moby pkg/stdcopy), checking every header.
Demuxed demux(std::string_view raw) {
  Demuxed demuxed;
  while (!raw.empty()) {
    EXPECT_GE(raw.size(), 8u) << "truncated stdcopy header";
    if (raw.size() < 8) break;
    auto byte = [&](size_t i) { return static_cast<uint8_t>(raw[i]); };
    EXPECT_TRUE(byte(0) == 1 || byte(0) == 2) << "stream type " << int{byte(0)};
    EXPECT_EQ(byte(1) | byte(2) | byte(3), 0);
    size_t length = (size_t{byte(4)} << 24) | (size_t{byte(5)} << 16) | (size_t{byte(6)} << 8) | byte(7);
    EXPECT_GT(length, 0u) << "empty frame";
    EXPECT_GE(raw.size() - 8, length) << "truncated stdcopy payload";
    std::string_view payload = raw.substr(8, length);
    (byte(0) == 1 ? demuxed.out : demuxed.err).append(payload);
    raw.remove_prefix(std::min(raw.size(), 8 + length));
  }
  return demuxed;
}

// Reads one stdcopy frame: its stream type and payload.
std::pair<int, std::string> read_frame(int fd) {
  char header[8];
  EXPECT_TRUE(read_exact(fd, header).has_value());
  size_t length = (size_t{static_cast<uint8_t>(header[4])} << 24) |
                  (size_t{static_cast<uint8_t>(header[5])} << 16) |
                  (size_t{static_cast<uint8_t>(header[6])} << 8) | static_cast<uint8_t>(header[7]);
  std::string payload(length, '\0');
  EXPECT_TRUE(read_exact(fd, payload).has_value());
  return {header[0], payload};
}

std::string read_all(int fd) {
  auto text = read_to_end(fd);
  EXPECT_TRUE(text.has_value()) << text.error().message();
  return text.value_or("");
}

ProcessSpec shell(std::string script) {
  return ProcessSpec{.argv = {"sh", "-c", std::move(script)}};
}

// A pattern that is not periodic at any power of two, so a lost or repeated chunk shows.
std::string pattern(size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>('a' + (i * 7 + i / 4093) % 26);
  return data;
}

std::string numbers(const std::string& prefix, int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += prefix + std::to_string(i) + "\n";
  return text;
}

class AgentHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto launched = launch_agent(sanitized_agent_binary());
    ASSERT_TRUE(launched.has_value()) << launched.error().message();
    agent_ = std::make_unique<ChildProcess>(std::move(launched->process));
    auto hub = AgentHub::start(std::move(launched->host_end), kTimeout, [this](const Error& error) {
      lost_.set_value({error.category(), error.message()});
    });
    ASSERT_TRUE(hub.has_value()) << hub.error().message();
    hub_ = std::move(hub).value();
  }

  void TearDown() override {
    hub_.reset();
    if (agent_ && !agent_killed_) {
      auto status = agent_->wait_for(kTimeout);
      ASSERT_TRUE(status.has_value() && status->has_value()) << "agent did not exit";
      EXPECT_EQ(**status, ExitStatus::exited(0));
    }
  }

  // An exec whose client is one end of a socketpair; the test keeps the other end in `client`.
  ExecHandle exec(const ProcessSpec& spec, UniqueFd& client, ExecIo io = {}) {
    auto pair = make_socket_pair();
    EXPECT_TRUE(pair.has_value());
    client = std::move(pair->first);
    io.client = std::move(pair->second);
    io.tty = spec.tty;
    auto handle = hub_->exec(spec, std::move(io));
    EXPECT_TRUE(handle.has_value()) << handle.error().message();
    return std::move(handle).value();
  }

  ExitStatus wait(const ExecHandle& handle) {
    auto status = handle.wait(kTimeout);
    EXPECT_TRUE(status.has_value()) << status.error().message();
    return status.value_or(ExitStatus::exited(-1));
  }

  std::unique_ptr<ChildProcess> agent_;
  bool agent_killed_ = false;
  std::unique_ptr<AgentHub> hub_;
  std::promise<std::pair<ErrorCategory, std::string>> lost_;
};

TEST_F(AgentHubTest, StdoutAndStderrArriveInStdcopyFrames) {
  UniqueFd client;
  ExecHandle handle = exec(shell("seq 1 30000; seq 5 9000 >&2; printf tail; exit 0"), client);
  Demuxed output = demux(read_all(client.get()));
  std::string expected_out, expected_err;
  for (int i = 1; i <= 30000; ++i) expected_out += std::to_string(i) + "\n";
  for (int i = 5; i <= 9000; ++i) expected_err += std::to_string(i) + "\n";
  EXPECT_EQ(output.out, expected_out + "tail");
  EXPECT_EQ(output.err, expected_err);
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
  EXPECT_EQ(handle.exit_status(), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, TtyOutputIsRaw) {
  UniqueFd client;
  ProcessSpec spec = shell("printf 'a\\nb'; printf c >&2");
  spec.tty = true;
  ExecHandle handle = exec(spec, client);
  // The pty merges stderr and turns \n into \r\n; no stdcopy headers.
  EXPECT_EQ(read_all(client.get()), "a\r\nbc");
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, StdinStreamsThroughCatWithFlowControl) {
  UniqueFd client;
  const std::string data = pattern(size_t{8} << 20);
  ExecHandle handle = exec({.argv = {"cat"}}, client, {.attach_stdin = true, .already_read_input = "early:"});
  // Written while the output is read, as a real client does; neither side fits in socket buffers alone.
  std::thread writer([&] {
    EXPECT_TRUE(write_all(client.get(), data).has_value());
    ::shutdown(client.get(), SHUT_WR);  // the client's stdin ended: cat sees EOF
  });
  Demuxed output = demux(read_all(client.get()));
  writer.join();
  EXPECT_EQ(output.out.size(), data.size() + 6);
  EXPECT_TRUE(output.out == "early:" + data) << "echoed bytes differ";
  EXPECT_EQ(output.err, "");
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, AClientThatDoesNotReadStallsTheProcess) {
  UniqueFd client;
  constexpr size_t kSize = size_t{8} << 20;
  ExecHandle handle = exec(shell("head -c 8388608 /dev/zero"), client);
  // 8 MiB is far more than the window plus both socket buffers: with credit granted only as the client
  // takes bytes, the process cannot finish while nobody reads.
  auto early = handle.wait(std::chrono::milliseconds(1000));
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().category(), ErrorCategory::kTimeout);
  EXPECT_EQ(demux(read_all(client.get())).out.size(), kSize);
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, ConcurrentExecsGetOnlyTheirOwnOutputAndExitCodes) {
  constexpr int kSessions = 10;
  constexpr int kLines = 2000;
  UniqueFd clients[kSessions];
  std::vector<ExecHandle> handles;
  for (int n = 0; n < kSessions; ++n) {
    handles.push_back(exec(shell(fmt::format("i=0; while [ $i -lt {0} ]; do echo s{1}-$i; echo e{1}-$i >&2; "
                                             "i=$((i+1)); done; exit {1}",
                                             kLines, n)),
                           clients[n]));
  }
  Demuxed outputs[kSessions];
  std::vector<std::thread> readers;
  for (int n = 0; n < kSessions; ++n) {
    readers.emplace_back([&, n] { outputs[n] = demux(read_all(clients[n].get())); });
  }
  for (auto& reader : readers) reader.join();
  for (int n = 0; n < kSessions; ++n) {
    EXPECT_TRUE(outputs[n].out == numbers(fmt::format("s{}-", n), kLines)) << "stdout of session " << n;
    EXPECT_TRUE(outputs[n].err == numbers(fmt::format("e{}-", n), kLines)) << "stderr of session " << n;
    EXPECT_EQ(wait(handles[n]), ExitStatus::exited(n));
  }
}

TEST_F(AgentHubTest, ExitCodeIsReported) {
  UniqueFd client;
  ExecHandle handle = exec(shell("exit 3"), client);
  EXPECT_EQ(read_all(client.get()), "");
  EXPECT_EQ(wait(handle), ExitStatus::exited(3));
}

TEST_F(AgentHubTest, SignalReachesTheProcess) {
  UniqueFd client;
  ExecHandle handle = exec(shell("echo ready; exec sleep 60"), client);
  EXPECT_EQ(read_frame(client.get()), std::make_pair(1, std::string("ready\n")));
  ASSERT_TRUE(handle.signal(SIGTERM).has_value());
  ExitStatus status = wait(handle);
  EXPECT_EQ(status, ExitStatus::signaled(SIGTERM));
  EXPECT_EQ(status.shell_code(), 143);
  EXPECT_TRUE(handle.signal(SIGTERM).has_value()) << "signalling an exited process is a no-op";
}

TEST_F(AgentHubTest, ResizeReachesTheTty) {
  UniqueFd client;
  ProcessSpec spec = shell("read line; stty size");
  spec.tty = true;
  ExecHandle handle = exec(spec, client, {.attach_stdin = true});
  ASSERT_TRUE(handle.resize({33, 101}).has_value());
  ASSERT_TRUE(write_all(client.get(), "go\n").has_value());  // resized before the shell asks
  std::string output = read_all(client.get());
  EXPECT_NE(output.find("33 101"), std::string::npos) << output;
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, CommandNotFoundIsTheStartError) {
  auto [client, hub_end] = make_socket_pair().value();
  ExecIo io{.client = std::move(hub_end)};
  auto handle = hub_->exec({.argv = {"kiln-no-such-command"}}, std::move(io));
  ASSERT_FALSE(handle.has_value());
  EXPECT_EQ(handle.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(exit_code_for_start_error(handle.error()), 127);
  // exec() takes ExecIo&& and leaves it alone when it fails: that contract is what this checks.
  EXPECT_TRUE(io.client.valid())  // NOLINT(bugprone-use-after-move)
      << "the caller keeps its client to report the failure";
}

TEST_F(AgentHubTest, ClientMustBeASocketAndMatchTheTtyMode) {
  Pipe pipe = make_pipe().value();
  auto handle = hub_->exec({.argv = {"true"}}, ExecIo{.client = std::move(pipe.write_end)});
  ASSERT_FALSE(handle.has_value());
  EXPECT_EQ(handle.error().category(), ErrorCategory::kInvalidArgument);
  auto mismatched = hub_->exec({.argv = {"true"}, .tty = true}, ExecIo{});
  ASSERT_FALSE(mismatched.has_value());
  EXPECT_EQ(mismatched.error().category(), ErrorCategory::kInvalidArgument);
}

TEST_F(AgentHubTest, ClientDisconnectMidStreamKillsTheProcessOnly) {
  UniqueFd client;
  ExecHandle other = exec({.argv = {"cat"}}, client, {.attach_stdin = true});
  UniqueFd yes_client;
  ExecHandle yes = exec({.argv = {"yes"}}, yes_client);
  EXPECT_EQ(read_frame(yes_client.get()).first, 1);
  yes_client.reset();  // gone mid-stream: the next write to it fails
  EXPECT_EQ(wait(yes), ExitStatus::signaled(SIGKILL));

  // The hub and the other session carry on.
  ASSERT_TRUE(write_all(client.get(), "still here").has_value());
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(demux(read_all(client.get())).out, "still here");
  EXPECT_EQ(wait(other), ExitStatus::exited(0));
  UniqueFd echo_client;
  ExecHandle echo = exec({.argv = {"echo", "hi"}}, echo_client);
  EXPECT_EQ(demux(read_all(echo_client.get())).out, "hi\n");
  EXPECT_EQ(wait(echo), ExitStatus::exited(0));
  EXPECT_TRUE(hub_->ping(kTimeout).has_value());
}

TEST_F(AgentHubTest, ClientHangupWhileTheProcessIsQuietKillsIt) {
  UniqueFd client;
  ExecHandle handle = exec(shell("echo ready; exec sleep 60"), client);
  EXPECT_EQ(read_frame(client.get()).second, "ready\n");
  client.reset();
  EXPECT_EQ(wait(handle), ExitStatus::signaled(SIGKILL));
}

TEST_F(AgentHubTest, LosingTheAgentWakesWaitersAndNotifies) {
  UniqueFd client;
  ExecHandle handle = exec({.argv = {"cat"}}, client, {.attach_stdin = true});
  EXPECT_TRUE(hub_->alive());
  ASSERT_TRUE(agent_->send_signal(SIGKILL).has_value());
  agent_killed_ = true;

  auto status = handle.wait(kTimeout);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(status.error().message(), "lost connection to the VM's agent");
  auto lost = lost_.get_future();
  ASSERT_EQ(lost.wait_for(kTimeout), std::future_status::ready);
  EXPECT_EQ(lost.get().first, ErrorCategory::kUnavailable);
  EXPECT_FALSE(hub_->alive());
  EXPECT_EQ(read_all(client.get()), "") << "the client is closed";

  EXPECT_EQ(hub_->ping(kTimeout).error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(handle.signal(SIGTERM).error().category(), ErrorCategory::kUnavailable);
  auto again = hub_->exec({.argv = {"true"}}, ExecIo{});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().category(), ErrorCategory::kUnavailable);
}

TEST_F(AgentHubTest, HandlesOutliveTheHub) {
  UniqueFd client;
  ExecHandle handle = exec(shell("exec sleep 60"), client);
  hub_.reset();  // closes the channel: the agent kills the process and exits
  auto status = handle.wait(kTimeout);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(handle.signal(SIGTERM).error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(handle.exit_status(), std::nullopt);
}

TEST_F(AgentHubTest, CallsRunWhileSessionsStream) {
  UniqueFd client;
  const std::string data = pattern(size_t{2} << 20);
  ExecHandle handle = exec({.argv = {"cat"}}, client, {.attach_stdin = true});
  std::thread writer([&] {
    EXPECT_TRUE(write_all(client.get(), data).has_value());
    ::shutdown(client.get(), SHUT_WR);
  });
  std::string raw;
  std::thread reader([&] { raw = read_all(client.get()); });

  for (int i = 0; i < 20; ++i) {
    Result<Json> pong = hub_->call([i](AgentConnection& connection) -> Result<Json> {
      KILN_TRY(connection.ping(kTimeout));
      return Json{{"round", i}};
    });
    ASSERT_TRUE(pong.has_value()) << pong.error().message();
    EXPECT_EQ((*pong)["round"], i);
  }
  // A one-shot process run to completion on the hub thread, as a mount helper would.
  auto ran = hub_->call([](AgentConnection& connection) {
    return testing::run(connection, {.argv = {"echo", "one-shot"}});
  });
  ASSERT_TRUE(ran.has_value()) << ran.error().message();
  EXPECT_EQ(ran->out, "one-shot\n");

  writer.join();
  reader.join();
  EXPECT_TRUE(demux(raw).out == data);
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, CallFromTheHubThreadIsRefused) {
  auto nested = hub_->call([this](AgentConnection&) { return hub_->ping(kTimeout); });
  ASSERT_FALSE(nested.has_value());
  EXPECT_EQ(nested.error().category(), ErrorCategory::kFailedPrecondition);
}

TEST_F(AgentHubTest, DetachedExecConsumesOutputAndClosesStdin) {
  // ~600 KB of output: more than the window, so it only finishes if the hub consumes it.
  auto handle = hub_->exec(shell("seq 1 100000; seq 1 1000 >&2; exit 4"), ExecIo{});
  ASSERT_TRUE(handle.has_value()) << handle.error().message();
  EXPECT_EQ(wait(*handle), ExitStatus::exited(4));
  auto cat = hub_->exec({.argv = {"cat"}}, ExecIo{});
  ASSERT_TRUE(cat.has_value()) << cat.error().message();
  EXPECT_EQ(wait(*cat), ExitStatus::exited(0)) << "stdin is closed at once";
}

TEST_F(AgentHubTest, UnattachedStreamsAreDropped) {
  UniqueFd client;
  ExecHandle handle =
      exec(shell("echo out; seq 1 100000 >&2"), client, {.attach_stdout = true, .attach_stderr = false});
  Demuxed output = demux(read_all(client.get()));
  EXPECT_EQ(output.out, "out\n");
  EXPECT_EQ(output.err, "");
  EXPECT_EQ(wait(handle), ExitStatus::exited(0));
}

TEST_F(AgentHubTest, ShutdownIsAcknowledged) {
  // Outside a VM the agent serving a socket only acknowledges; the daemon then sees the channel close.
  EXPECT_TRUE(hub_->shutdown(false, kTimeout).has_value());
}

}  // namespace
}  // namespace kiln::agent

// kiln-agent facing a host that speaks the protocol badly, driven with raw frames: every mistake gets an
// ERROR reply naming the stream, and the agent keeps serving (framing errors end the session cleanly).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include "agent/agent_test_support.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"

namespace kiln::agent {
namespace {

constexpr auto kTimeout = std::chrono::seconds(30);

class AgentRawHost : public ::testing::Test {
 protected:
  void SetUp() override {
    auto launched = testing::launch_agent(testing::sanitized_agent_binary());
    ASSERT_TRUE(launched.has_value()) << launched.error().message();
    agent_ = std::make_unique<ChildProcess>(std::move(launched->process));
    channel_ = std::move(launched->host_end);
  }

  void TearDown() override {
    channel_.reset();
    auto status = agent_->wait_for(kTimeout);
    ASSERT_TRUE(status.has_value() && status->has_value()) << "agent did not exit";
    EXPECT_EQ(**status, ExitStatus::exited(0)) << "the agent must survive a bad host and exit cleanly";
  }

  void send(MessageType type, StreamId stream, std::string_view payload = {}) {
    ASSERT_TRUE(write_all(channel_.get(), encode_frame(type, stream, payload)).has_value());
  }
  void send_raw(std::string_view bytes) { ASSERT_TRUE(write_all(channel_.get(), bytes).has_value()); }

  // The next frame from the agent, or nullopt at end of stream.
  std::optional<Frame> receive() {
    for (;;) {
      auto frame = decoder_.next();
      EXPECT_TRUE(frame.has_value()) << frame.error().message();
      if (!frame) return std::nullopt;
      if (*frame) return std::move(*frame);
      pollfd channel{channel_.get(), POLLIN, 0};
      if (::poll(&channel, 1, static_cast<int>(std::chrono::milliseconds(kTimeout).count())) != 1) {
        ADD_FAILURE() << "no frame from the agent";
        return std::nullopt;
      }
      char buffer[65536];
      ssize_t n = ::read(channel_.get(), buffer, sizeof buffer);
      if (n <= 0) return std::nullopt;
      decoder_.feed(std::string_view(buffer, static_cast<size_t>(n)));
    }
  }

  // Expects an ERROR on `stream`; returns it.
  ErrorReply expect_error(StreamId stream) {
    auto frame = receive();
    EXPECT_TRUE(frame.has_value());
    if (!frame) return {};
    EXPECT_EQ(frame->type, MessageType::kError) << to_string(frame->type) << " " << frame->payload;
    EXPECT_EQ(frame->stream, stream);
    auto reply = decode_error_reply(frame->payload);
    EXPECT_TRUE(reply.has_value());
    return reply ? *reply : ErrorReply{};
  }

  void hello() {
    send(MessageType::kHello, 0, encode(HelloRequest{}));
    auto reply = receive();
    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->type, MessageType::kHelloReply);
  }

  // A PING round trip: proves the agent is alive and has handled everything sent before it.
  void expect_alive() {
    send(MessageType::kPing, 0, "alive?");
    auto pong = receive();
    ASSERT_TRUE(pong.has_value());
    EXPECT_EQ(pong->type, MessageType::kPong);
    EXPECT_EQ(pong->payload, "alive?");
  }

  std::unique_ptr<ChildProcess> agent_;
  UniqueFd channel_;
  FrameDecoder decoder_;
};

TEST_F(AgentRawHost, RequestsBeforeHelloAreRefused) {
  send(MessageType::kRun, 1, encode(ProcessSpec{.argv = {"true"}}));
  ErrorReply error = expect_error(1);
  EXPECT_EQ(error.category, ErrorCategory::kFailedPrecondition);
  EXPECT_NE(error.message.find("HELLO"), std::string::npos);
  expect_alive();
}

TEST_F(AgentRawHost, MajorVersionMismatchIsAClearError) {
  send(MessageType::kHello, 0, encode(HelloRequest{{2, 0}, "future host"}));
  ErrorReply error = expect_error(0);
  EXPECT_EQ(error.category, ErrorCategory::kUnsupported);
  EXPECT_EQ(error.message, fmt::format("protocol version mismatch: host speaks 2.0, agent speaks {}.{}",
                                       kProtocolVersion.major, kProtocolVersion.minor));
  // A newer minor is fine.
  send(MessageType::kHello, 0, encode(HelloRequest{{1, 9}, "newer host"}));
  auto reply = receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->type, MessageType::kHelloReply);
}

TEST_F(AgentRawHost, UnknownProcessIdsGetErrorsNotCrashes) {
  hello();
  send(MessageType::kSignal, 42, encode(SignalRequest{9}));
  EXPECT_EQ(expect_error(42).category, ErrorCategory::kNotFound);
  send(MessageType::kStdin, 43, "data");
  EXPECT_EQ(expect_error(43).category, ErrorCategory::kNotFound);
  send(MessageType::kCloseStdin, 44);
  EXPECT_EQ(expect_error(44).category, ErrorCategory::kNotFound);
  send(MessageType::kResize, 45, encode(TtySize{1, 1}));
  EXPECT_EQ(expect_error(45).category, ErrorCategory::kNotFound);
  send(MessageType::kCredit, 46, encode(CreditGrant{DataChannel::kStdout, 1}));
  ErrorReply error = expect_error(46);
  EXPECT_EQ(error.category, ErrorCategory::kNotFound);
  EXPECT_EQ(error.message, "CREDIT: no process with id 46");
  expect_alive();
}

TEST_F(AgentRawHost, MalformedRequestsGetErrors) {
  hello();
  send(MessageType::kRun, 0, encode(ProcessSpec{.argv = {"true"}}));
  EXPECT_EQ(expect_error(0).category, ErrorCategory::kProtocol);
  send(MessageType::kRun, 5, "{not json");
  EXPECT_EQ(expect_error(5).category, ErrorCategory::kProtocol);
  send(MessageType::kRun, 6, R"({"argv":[]})");
  EXPECT_EQ(expect_error(6).category, ErrorCategory::kProtocol);
  send(MessageType::kStdout, 7, "the host does not send output");
  EXPECT_EQ(expect_error(7).category, ErrorCategory::kProtocol);
  send(MessageType::kShutdown, 0, "[]");
  EXPECT_EQ(expect_error(0).category, ErrorCategory::kProtocol);
  expect_alive();
}

TEST_F(AgentRawHost, MalformedMountRequestsGetErrorsOnTheirId) {
  hello();
  MountRequest mount{.source = "kilnshare0", .target = "/mnt/x", .fstype = "9p"};
  send(MessageType::kMount, 0, encode(mount));
  EXPECT_EQ(expect_error(0).category, ErrorCategory::kProtocol);
  send(MessageType::kMount, 8, R"({"target":"/mnt/x"})");
  EXPECT_EQ(expect_error(8).category, ErrorCategory::kProtocol);
  send(MessageType::kUnmount, 9, "[]");
  EXPECT_EQ(expect_error(9).category, ErrorCategory::kProtocol);
  send(MessageType::kMountReply, 10, "{}");
  EXPECT_EQ(expect_error(10).category, ErrorCategory::kProtocol);
  // An id held by a running process cannot name a request as well.
  send(MessageType::kRun, 11, encode(ProcessSpec{.argv = {"sleep", "100"}}));
  EXPECT_EQ(receive()->type, MessageType::kStarted);
  send(MessageType::kMount, 11, encode(mount));
  EXPECT_EQ(expect_error(11).category, ErrorCategory::kAlreadyExists);
  expect_alive();
}

// The agent checks CLONE_INIT itself (a host may not be Kiln's client): each bad value is refused on its id
// before anything is applied, and the session goes on.
TEST_F(AgentRawHost, BadCloneInitRequestsGetErrorsOnTheirId) {
  hello();
  std::string seed(64, 'a');
  send(MessageType::kCloneInit, 3, fmt::format(R"({{"unix_nanos":5,"seed":"{}"}})", std::string(62, 'a')));
  ErrorReply short_seed = expect_error(3);
  EXPECT_EQ(short_seed.category, ErrorCategory::kInvalidArgument);
  EXPECT_NE(short_seed.message.find("seed"), std::string::npos) << short_seed.message;
  send(MessageType::kCloneInit, 4, fmt::format(R"({{"unix_nanos":5,"seed":"{}z"}})", std::string(63, 'a')));
  EXPECT_EQ(expect_error(4).category, ErrorCategory::kInvalidArgument);
  send(MessageType::kCloneInit, 5,
       fmt::format(R"({{"unix_nanos":5,"seed":"{}","machine_id":"ABCDEF"}})", seed));
  EXPECT_EQ(expect_error(5).category, ErrorCategory::kInvalidArgument);
  send(MessageType::kCloneInit, 6,
       fmt::format(
           R"({{"unix_nanos":5,"seed":"{}","mounts":[{{"source":"a","target":"/x/../etc","fstype":"9p"}}]}})",
           seed));
  EXPECT_EQ(expect_error(6).category, ErrorCategory::kInvalidArgument);
  send(MessageType::kCloneInit, 0, fmt::format(R"({{"unix_nanos":5,"seed":"{}"}})", seed));
  EXPECT_EQ(expect_error(0).category, ErrorCategory::kProtocol);
  // Well formed, but this agent is no guest's PID 1: refused, nothing applied to the test machine.
  send(MessageType::kCloneInit, 7, fmt::format(R"({{"unix_nanos":5,"seed":"{}","hostname":"c1"}})", seed));
  EXPECT_EQ(expect_error(7).category, ErrorCategory::kUnsupported);
  expect_alive();
}

TEST_F(AgentRawHost, DuplicateProcessIdIsRefused) {
  hello();
  send(MessageType::kRun, 3, encode(ProcessSpec{.argv = {"sleep", "100"}}));
  EXPECT_EQ(receive()->type, MessageType::kStarted);
  send(MessageType::kRun, 3, encode(ProcessSpec{.argv = {"true"}}));
  EXPECT_EQ(expect_error(3).category, ErrorCategory::kAlreadyExists);
  send(MessageType::kSignal, 3, encode(SignalRequest{9}));
  auto exit = receive();
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->type, MessageType::kExit);
  EXPECT_EQ(*decode_exit_status(exit->payload), ExitStatus::signaled(9));
}

TEST_F(AgentRawHost, StdinBeyondTheWindowIsRefused) {
  hello();
  send(MessageType::kRun, 1, encode(ProcessSpec{.argv = {"sleep", "100"}}));
  EXPECT_EQ(receive()->type, MessageType::kStarted);
  // Spend all credit (the agent grants back what the pipe takes) until a PING round trip brings no more.
  uint64_t credit = kInitialWindow;
  while (credit > 0) {
    send(MessageType::kStdin, 1, std::string(credit, 'x'));
    credit = 0;
    send(MessageType::kPing, 0, "sync");
    for (;;) {
      auto frame = receive();
      ASSERT_TRUE(frame.has_value());
      if (frame->type == MessageType::kPong) break;
      ASSERT_EQ(frame->type, MessageType::kCredit);
      credit += decode_credit_grant(frame->payload)->bytes;
    }
  }
  send(MessageType::kStdin, 1, "one byte too many");
  ErrorReply error = expect_error(1);
  EXPECT_EQ(error.category, ErrorCategory::kProtocol);
  EXPECT_NE(error.message.find("credit"), std::string::npos) << error.message;
  send(MessageType::kSignal, 1, encode(SignalRequest{9}));
  // Stdin the dead process never read is dropped and credited back before the EXIT.
  for (;;) {
    auto frame = receive();
    ASSERT_TRUE(frame.has_value());
    if (frame->type == MessageType::kExit) break;
    ASSERT_EQ(frame->type, MessageType::kCredit);
  }
}

TEST_F(AgentRawHost, GarbageEndsTheSessionWithAnError) {
  hello();
  send(MessageType::kRun, 1, encode(ProcessSpec{.argv = {"sleep", "100"}}));
  EXPECT_EQ(receive()->type, MessageType::kStarted);
  send_raw("GET / HTTP/1.1\r\nHost: kiln\r\n\r\n");
  ErrorReply error = expect_error(0);
  EXPECT_EQ(error.category, ErrorCategory::kProtocol);
  EXPECT_NE(error.message.find("bad frame magic"), std::string::npos) << error.message;
  // The session is over: the channel closes and (served on a given fd) the agent exits, killing the sleep.
  EXPECT_FALSE(receive().has_value());
}

TEST_F(AgentRawHost, OversizedFrameEndsTheSessionWithAnError) {
  hello();
  std::string header = encode_frame(MessageType::kStdin, 1, "");
  uint32_t huge = kMaxPayload + 1;
  for (int i = 0; i < 4; ++i) header[8 + i] = static_cast<char>((huge >> (8 * i)) & 0xff);
  send_raw(header);
  EXPECT_NE(expect_error(0).message.find("too large"), std::string::npos);
  EXPECT_FALSE(receive().has_value());
}

TEST_F(AgentRawHost, SecondHelloStartsOver) {
  hello();
  send(MessageType::kRun, 1, encode(ProcessSpec{.argv = {"sleep", "100"}}));
  EXPECT_EQ(receive()->type, MessageType::kStarted);
  hello();  // the sleep is killed; its id is free again
  send(MessageType::kRun, 1, encode(ProcessSpec{.argv = {"true"}}));
  EXPECT_EQ(receive()->type, MessageType::kStarted);
}

}  // namespace
}  // namespace kiln::agent

// AgentConnection against a scripted fake agent on a socketpair: the host must turn a misbehaving or vanished
// agent into clear errors.
#include "agent/client/agent_connection.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

namespace kiln::agent {
namespace {

constexpr auto kTimeout = std::chrono::seconds(10);

struct FakeAgent {
  UniqueFd host_end;
  UniqueFd agent_end;

  static FakeAgent create() {
    auto pair = make_socket_pair();
    EXPECT_TRUE(pair.has_value());
    return FakeAgent{std::move(pair->first), std::move(pair->second)};
  }
  void send(MessageType type, StreamId stream, std::string_view payload = {}) {
    ASSERT_TRUE(write_all(agent_end.get(), encode_frame(type, stream, payload)).has_value());
  }
  void hello_reply(ProtocolVersion version = kProtocolVersion, std::vector<std::string> capabilities = {}) {
    send(MessageType::kHelloReply, 0, encode(HelloReply{version, "fake-agent", std::move(capabilities)}));
  }
  // Every frame the host has sent so far (the socket is drained without blocking).
  std::vector<Frame> received() {
    EXPECT_TRUE(set_nonblocking(agent_end.get()).has_value());
    char buffer[65536];
    for (ssize_t n; (n = ::read(agent_end.get(), buffer, sizeof buffer)) > 0;) {
      decoder.feed(std::string_view(buffer, static_cast<size_t>(n)));
    }
    std::vector<Frame> frames;
    for (auto frame = decoder.next(); frame && *frame; frame = decoder.next())
      frames.push_back(std::move(**frame));
    return frames;
  }
  FrameDecoder decoder;
};

// Pumps until the connection fails; returns that error.
Error pump_until_error(AgentConnection& connection) {
  for (;;) {
    auto pumped = connection.pump(std::chrono::milliseconds(100));
    if (!pumped) return std::move(pumped).error();
  }
}

std::unique_ptr<AgentConnection> connected(FakeAgent& agent, std::vector<std::string> capabilities = {}) {
  agent.hello_reply(kProtocolVersion, std::move(capabilities));
  auto connection = AgentConnection::connect(std::move(agent.host_end), kTimeout);
  EXPECT_TRUE(connection.has_value()) << connection.error().message();
  return connection ? std::move(connection).value() : nullptr;
}

TEST(AgentConnection, HandshakeTimesOut) {
  FakeAgent agent = FakeAgent::create();
  auto connection = AgentConnection::connect(std::move(agent.host_end), std::chrono::milliseconds(200));
  ASSERT_FALSE(connection.has_value());
  EXPECT_EQ(connection.error().category(), ErrorCategory::kTimeout);
}

TEST(AgentConnection, MajorVersionMismatchIsUnsupported) {
  FakeAgent agent = FakeAgent::create();
  agent.hello_reply({2, 1});
  auto connection = AgentConnection::connect(std::move(agent.host_end), kTimeout);
  ASSERT_FALSE(connection.has_value());
  EXPECT_EQ(connection.error().category(), ErrorCategory::kUnsupported);
  EXPECT_EQ(connection.error().message(),
            fmt::format("the VM's agent speaks protocol 2.1; this host speaks {}.{}", kProtocolVersion.major,
                        kProtocolVersion.minor));
}

TEST(AgentConnection, AgentRefusingHelloIsItsError) {
  FakeAgent agent = FakeAgent::create();
  agent.send(MessageType::kError, 0,
             encode(ErrorReply{ErrorCategory::kUnsupported, "protocol version mismatch"}));
  auto connection = AgentConnection::connect(std::move(agent.host_end), kTimeout);
  ASSERT_FALSE(connection.has_value());
  EXPECT_EQ(connection.error().category(), ErrorCategory::kUnsupported);
  EXPECT_EQ(connection.error().message(), "protocol version mismatch");
}

TEST(AgentConnection, ChannelClosedDuringHandshakeIsUnavailable) {
  FakeAgent agent = FakeAgent::create();
  agent.agent_end.reset();
  auto connection = AgentConnection::connect(std::move(agent.host_end), kTimeout);
  ASSERT_FALSE(connection.has_value());
  EXPECT_EQ(connection.error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(connection.error().message(), "lost connection to the VM's agent");
}

TEST(AgentConnection, OutputBeyondTheWindowIsAProtocolError) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent);
  ASSERT_TRUE(connection);
  agent.send(MessageType::kStarted, 1, encode(ProcessStarted{42}));
  auto id = connection->start_process({.argv = {"x"}});
  ASSERT_TRUE(id.has_value()) << id.error().message();
  // Bigger than the socket buffer: written from a thread while the connection reads.
  std::thread flood([&] { agent.send(MessageType::kStdout, *id, std::string(kInitialWindow + 1, 'x')); });
  Error error = pump_until_error(*connection);
  flood.join();
  EXPECT_EQ(error.category(), ErrorCategory::kProtocol);
  EXPECT_NE(error.message().find("credit"), std::string::npos) << error.message();
  // The connection stays failed.
  EXPECT_FALSE(connection->ping(kTimeout).has_value());
}

TEST(AgentConnection, OutputForAStreamNeverUsedIsAProtocolError) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent);
  ASSERT_TRUE(connection);
  agent.send(MessageType::kStdout, 77, "who?");
  EXPECT_EQ(pump_until_error(*connection).category(), ErrorCategory::kProtocol);
}

TEST(AgentConnection, GarbageFromTheAgentIsAProtocolError) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent);
  ASSERT_TRUE(connection);
  ASSERT_TRUE(write_all(agent.agent_end.get(), "garbage garbage").has_value());
  Error error = pump_until_error(*connection);
  EXPECT_EQ(error.category(), ErrorCategory::kProtocol);
  EXPECT_NE(error.message().find("from the VM's agent"), std::string::npos);
}

TEST(AgentConnection, ConnectionErrorsAreCollectedAndStaleOnesDropped) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent);
  ASSERT_TRUE(connection);
  agent.send(MessageType::kStarted, 1, encode(ProcessStarted{42}));
  auto id = connection->start_process({.argv = {"x"}});
  ASSERT_TRUE(id.has_value());
  connection->release(*id);
  agent.send(MessageType::kError, *id, encode(ErrorReply{ErrorCategory::kNotFound, "CREDIT: no process"}));
  agent.send(MessageType::kError, 0, encode(ErrorReply{ErrorCategory::kProtocol, "something odd"}));
  agent.send(MessageType::kPong, 0, "1");
  ASSERT_TRUE(connection->ping(kTimeout).has_value());
  auto errors = connection->take_agent_errors();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message(), "something odd");
}

TEST(AgentConnection, StartFailureCarriesTheAgentsCategory) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent);
  ASSERT_TRUE(connection);
  agent.send(MessageType::kError, 1,
             encode(ErrorReply{ErrorCategory::kNotFound, "exec foo: No such file or directory"}));
  auto id = connection->start_process({.argv = {"foo"}});
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(id.error().message(), "exec foo: No such file or directory");
}

TEST(AgentConnection, MountIsARequestOnItsOwnId) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent, {"mount"});
  ASSERT_TRUE(connection);
  MountRequest request{.source = "kilnshare0",
                       .target = "/data",
                       .fstype = "9p",
                       .options = "trans=virtio",
                       .read_only = true};
  // Each reply waits in the socket before its request; ids are handed out from 1, as for processes.
  agent.send(MessageType::kMountReply, 1, "{}");
  auto mounted = connection->mount(request);
  ASSERT_TRUE(mounted.has_value()) << mounted.error().message();
  agent.send(
      MessageType::kError, 2,
      encode(ErrorReply{ErrorCategory::kNotFound, "mount 9p nosuchtag on /x: No such file or directory"}));
  auto failed = connection->mount({.source = "nosuchtag", .target = "/x", .fstype = "9p"});
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(failed.error().message(), "mount 9p nosuchtag on /x: No such file or directory");
  agent.send(MessageType::kUnmountReply, 3, "{}");
  ASSERT_TRUE(connection->unmount("/data").has_value());

  auto frames = agent.received();
  ASSERT_EQ(frames.size(), 4u);  // HELLO, MOUNT, MOUNT, UNMOUNT
  EXPECT_EQ(frames[1].type, MessageType::kMount);
  EXPECT_EQ(frames[1].stream, 1u);
  EXPECT_EQ(*decode_mount_request(frames[1].payload), request);
  EXPECT_EQ(frames[3].type, MessageType::kUnmount);
  EXPECT_EQ(frames[3].stream, 3u);
  EXPECT_EQ(decode_unmount_request(frames[3].payload)->target, "/data");
  agent.send(MessageType::kPong, 0, "1");
  EXPECT_TRUE(connection->ping(kTimeout).has_value()) << "the connection is still usable";
}

TEST(AgentConnection, MountNeedsTheCapabilityAndSendsNothingWithoutIt) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent);
  ASSERT_TRUE(connection);
  auto mounted = connection->mount({.source = "t", .target = "/x", .fstype = "9p"});
  ASSERT_FALSE(mounted.has_value());
  EXPECT_EQ(mounted.error().category(), ErrorCategory::kUnsupported);
  EXPECT_EQ(connection->unmount("/x").error().category(), ErrorCategory::kUnsupported);
  auto frames = agent.received();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, MessageType::kHello);
}

TEST(AgentConnection, WrongAnswerToAMountIsAProtocolError) {
  FakeAgent agent = FakeAgent::create();
  auto connection = connected(agent, {"mount"});
  ASSERT_TRUE(connection);
  agent.send(MessageType::kUnmountReply, 1, "{}");
  auto mounted = connection->mount({.source = "t", .target = "/x", .fstype = "9p"});
  ASSERT_FALSE(mounted.has_value());
  EXPECT_EQ(mounted.error().category(), ErrorCategory::kProtocol);
}

}  // namespace
}  // namespace kiln::agent

#include "engine/qemu/qmp.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "engine/qemu/fake_qemu_test_support.h"

namespace kiln::engine::qemu {
namespace {

using namespace std::chrono_literals;

TEST(Qmp, NegotiatesThenExecutesKeepingEvents) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  std::vector<Json> events;
  {
    FakeQemu fake(std::move(pair->second),
                  {R"({"return": {}})", R"({"event": "STOP", "timestamp": {}})"
                                        "\r\n"
                                        R"({"return": {"status": "paused", "running": false}})"});
    auto client = QmpClient::handshake(std::move(pair->first), 5s);
    ASSERT_TRUE(client) << client.error().message();
    auto status = client->execute("query-status");
    ASSERT_TRUE(status) << status.error().message();
    EXPECT_EQ((*status)["status"], "paused");
    events = client->take_events();
  }
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "STOP");
}

TEST(Qmp, WaitsForAMatchingEventKeepingTheOthers) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  FakeQemu fake(std::move(pair->second), {R"({"return": {}})",
                                          R"({"return": {}})"
                                          "\r\n"
                                          R"({"event": "MIGRATION", "data": {"status": "active"}})"
                                          "\r\n"
                                          R"({"event": "RESUME"})"
                                          "\r\n"
                                          R"({"event": "MIGRATION", "data": {"status": "completed"}})",
                                          "<close>"});
  auto client = QmpClient::handshake(std::move(pair->first), 5s);
  ASSERT_TRUE(client) << client.error().message();
  ASSERT_TRUE(client->execute("migrate-incoming"));
  auto done = [](const Json& data) { return data.value("status", "") == "completed"; };
  auto event = client->wait_for_event("MIGRATION", done, std::chrono::steady_clock::now() + 5s);
  ASSERT_TRUE(event) << event.error().message();
  EXPECT_EQ((*event)["data"]["status"], "completed");
  auto others = client->take_events();
  ASSERT_EQ(others.size(), 2u);
  EXPECT_EQ(others[1]["event"], "RESUME");
  // QEMU gone while waiting: unavailable, not a hang.
  (void)client->execute("quit", nullptr, 1s);
  auto gone = client->wait_for_event("MIGRATION", done, std::chrono::steady_clock::now() + 5s);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().category(), ErrorCategory::kUnavailable);
}

TEST(Qmp, CommandErrorsBecomeErrors) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  FakeQemu fake(std::move(pair->second),
                {R"({"return": {}})", R"({"error": {"class": "GenericError", "desc": "no such device"}})"});
  auto client = QmpClient::handshake(std::move(pair->first), 5s);
  ASSERT_TRUE(client);
  auto result = client->execute("device_del", {{"id", "x"}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message(), "QMP device_del: no such device");
}

TEST(Qmp, ClosedConnectionIsUnavailable) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  FakeQemu fake(std::move(pair->second), {R"({"return": {}})", "<close>"});
  auto client = QmpClient::handshake(std::move(pair->first), 5s);
  ASSERT_TRUE(client);
  auto result = client->execute("query-status");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kUnavailable);
}

TEST(Qmp, MalformedMessageIsAProtocolError) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  FakeQemu fake(std::move(pair->second), {R"({"return": {}})", "this is not json"});
  auto client = QmpClient::handshake(std::move(pair->first), 5s);
  ASSERT_TRUE(client);
  auto result = client->execute("query-status");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kProtocol);
}

TEST(Qmp, PassFdSendsTheDescriptorWithGetfd) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  // QEMU's side, written ahead: the greeting and the replies to qmp_capabilities and getfd.
  ASSERT_TRUE(write_all(pair->second.get(), R"({"QMP": {"version": {}, "capabilities": []}})"
                                            "\r\n"
                                            R"({"return": {}})"
                                            "\r\n"
                                            R"({"return": {}})"
                                            "\r\n"));
  auto client = QmpClient::handshake(std::move(pair->first), 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto pipe = make_pipe();
  ASSERT_TRUE(pipe);
  ASSERT_TRUE(client->pass_fd("kiln-state", pipe->write_end.get()));

  std::string received;
  UniqueFd passed;
  while (received.find("getfd") == std::string::npos || received.back() != '\n') {
    char data[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    iovec iov{.iov_base = data, .iov_len = sizeof data};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(pair->second.get(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    ASSERT_GT(n, 0);
    received.append(data, static_cast<size_t>(n));
    if (cmsghdr* header = CMSG_FIRSTHDR(&message); header && header->cmsg_type == SCM_RIGHTS) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
      passed.reset(fd);
    }
  }
  EXPECT_NE(received.find(R"({"arguments":{"fdname":"kiln-state"},"execute":"getfd"})"), std::string::npos)
      << received;
  // The descriptor that arrived is the pipe's write end: what goes in comes out of our read end.
  ASSERT_TRUE(passed);
  ASSERT_TRUE(write_all(passed.get(), "x"));
  char byte = 0;
  ASSERT_EQ(::read(pipe->read_end.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
}

TEST(Qmp, ConnectGivesUpWhenQemuIsGone) {
  // exit_fd already readable: the "QEMU" died before creating its socket.
  auto pipe = make_pipe();
  ASSERT_TRUE(pipe);
  pipe->write_end.reset();
  auto client = QmpClient::connect("/nonexistent/qmp.sock", pipe->read_end.get(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().category(), ErrorCategory::kUnavailable);
}

}  // namespace
}  // namespace kiln::engine::qemu

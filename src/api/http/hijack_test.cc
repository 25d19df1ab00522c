// Hijacked connections: 101 upgrade and Docker's legacy 200, pipelined bytes, the client side, stop().
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <future>
#include <thread>

#include "api/http/client.h"
#include "api/http/server.h"
#include "api/http/test_support.h"

namespace kiln::api::http {
namespace {

using namespace std::chrono_literals;
using testing::connect_raw;
using testing::read_until_contains;
using testing::send_raw;
using testing::start_server;

// Echoes everything until the client half-closes, then says "bye" and returns.
void echo(RawConnection connection) {
  send_raw(connection.fd.get(), connection.buffered);
  char buffer[4096];
  for (;;) {
    pollfd pfd{.fd = connection.fd.get(), .events = POLLIN};
    if (::poll(&pfd, 1, -1) < 0) return;
    ssize_t n = ::recv(connection.fd.get(), buffer, sizeof buffer, 0);
    if (n <= 0) break;
    send_raw(connection.fd.get(), std::string_view(buffer, static_cast<size_t>(n)));
  }
  send_raw(connection.fd.get(), "bye");
}

Router echo_router(std::promise<void>* hijacked = nullptr) {
  Router router;
  router.add("POST", "/containers/{id}/attach", [hijacked](Request& request) -> Result<Reply> {
    if (request.param("id") != "c1")
      return Error::not_found("no such container: " + std::string(request.param("id")));
    HijackReply reply{.body = [hijacked](RawConnection connection) {
      if (hijacked) hijacked->set_value();
      echo(std::move(connection));
    }};
    return reply;
  });
  return router;
}

TEST(Hijack, UpgradeWithBytesPipelinedAfterTheRequest) {
  auto test = start_server(echo_router());
  UniqueFd fd = connect_raw(test->tcp_endpoint);
  // The first stdin bytes ride in the same segment as the request: Beast has buffered them, they must reach
  // the handler.
  send_raw(fd.get(),
           "POST /containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: x\r\nConnection: "
           "Upgrade\r\nUpgrade: tcp\r\n"
           "Content-Length: 0\r\n\r\nhello");
  std::string got = read_until_contains(fd.get(), "hello");
  EXPECT_TRUE(got.starts_with("HTTP/1.1 101 Switching Protocols\r\n")) << got;
  EXPECT_NE(got.find("Upgrade: tcp\r\n"), std::string::npos);
  EXPECT_NE(got.find("Connection: Upgrade\r\n"), std::string::npos);
  EXPECT_NE(got.find("Content-Type: application/vnd.docker.raw-stream\r\n"), std::string::npos);
  EXPECT_TRUE(got.ends_with("\r\n\r\nhello")) << got;

  send_raw(fd.get(), "world");
  EXPECT_EQ(read_until_contains(fd.get(), "world"), "world");
  (void)::shutdown(fd.get(), SHUT_WR);  // half-close: the handler may still answer
  EXPECT_EQ(testing::read_until_eof(fd.get()), "bye");
}

TEST(Hijack, LegacyDockerClientsGet200RawStream) {
  auto test = start_server(echo_router());
  UniqueFd fd = connect_raw(test->unix_endpoint);
  send_raw(fd.get(), "POST /containers/c1/attach HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}ping");
  std::string got = read_until_contains(fd.get(), "ping");
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_NE(got.find("Content-Type: application/vnd.docker.raw-stream\r\n"), std::string::npos);
  EXPECT_EQ(got.find("Upgrade"), std::string::npos);
  EXPECT_TRUE(got.ends_with("\r\n\r\nping"));
}

TEST(Hijack, ClientUpgradeGivesAFullDuplexSocket) {
  auto test = start_server(echo_router());
  for (bool tcp : {false, true}) {
    Result<RawConnection> raw =
        test->client(tcp).request_upgrade({.method = "POST", .target = "/containers/c1/attach"});
    ASSERT_TRUE(raw) << raw.error().message();
    // Full duplex: many writes in flight while the echo comes back.
    std::string sent;
    for (int i = 0; i < 100; ++i) sent += fmt::format("line {}\n", i);
    std::thread writer([&] { send_raw(raw->fd.get(), sent); });
    std::string got = raw->buffered + read_until_contains(raw->fd.get(), "line 99\n");
    writer.join();
    EXPECT_EQ(got, sent);
    (void)::shutdown(raw->fd.get(), SHUT_WR);
    EXPECT_EQ(testing::read_until_eof(raw->fd.get()), "bye");
  }
}

TEST(Hijack, ClientSeesBytesTheServerSentWithTheHead) {
  Router router;
  router.add("POST", "/exec/{id}/start", [](Request&) -> Result<Reply> {
    return HijackReply{.body = [](RawConnection connection) { send_raw(connection.fd.get(), "greeting"); }};
  });
  auto test = start_server(std::move(router));
  Result<RawConnection> raw =
      test->client().request_upgrade(ClientRequest::json("POST", "/exec/e1/start", {{"Detach", false}}));
  ASSERT_TRUE(raw);
  // Wherever the greeting landed (with the head, or after), buffered + fd carry it once, in order.
  std::string got = raw->buffered + testing::read_until_eof(raw->fd.get());
  EXPECT_EQ(got, "greeting");
}

TEST(Hijack, ClientUpgradeKeepsTheResponseHeaders) {
  Router router;
  router.add("POST", "/v1/vms/{id}/exec", [](Request&) -> Result<Reply> {
    HijackReply reply{.body = [](RawConnection connection) { send_raw(connection.fd.get(), "out"); }};
    reply.headers.set("X-Kiln-Exec-Id", "e42");
    return reply;
  });
  auto test = start_server(std::move(router));
  for (bool tcp : {false, true}) {
    auto upgraded = test->client(tcp).request_upgrade_with_head(
        ClientRequest::json("POST", "/v1/vms/a/exec", {{"cmd", {"true"}}}));
    ASSERT_TRUE(upgraded) << upgraded.error().message();
    EXPECT_EQ(upgraded->head.status, 101);
    EXPECT_EQ(upgraded->head.headers.get("X-Kiln-Exec-Id").value_or(""), "e42");
    EXPECT_TRUE(upgraded->head.body.empty());
    std::string got = upgraded->connection.buffered + testing::read_until_eof(upgraded->connection.fd.get());
    EXPECT_EQ(got, "out");
  }
}

TEST(Hijack, ClientUpgradeReportsErrorResponses) {
  auto test = start_server(echo_router());
  Result<RawConnection> raw =
      test->client().request_upgrade({.method = "POST", .target = "/containers/zz/attach"});
  ASSERT_FALSE(raw);
  EXPECT_EQ(raw.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(raw.error().message(), "no such container: zz");
}

TEST(Hijack, StopShutsDownAHijackedConnection) {
  std::promise<void> hijacked;
  auto test = start_server(echo_router(&hijacked));
  Result<RawConnection> raw =
      test->client().request_upgrade({.method = "POST", .target = "/containers/c1/attach"});
  ASSERT_TRUE(raw);
  ASSERT_EQ(hijacked.get_future().wait_for(5s), std::future_status::ready);
  auto start = std::chrono::steady_clock::now();
  test->server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  // The handler saw EOF and left; the client sees the connection end.
  std::string rest = testing::read_until_eof(raw->fd.get(), 3s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_EQ(test->server->connection_count(), 0u);
}

}  // namespace
}  // namespace kiln::api::http

// Shared helpers for the server tests: a Server on a temporary unix socket plus an ephemeral tcp port, and
// raw-socket I/O for the tests that must speak bytes, not HTTP. Test-only; one thread per helper object.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "api/http/client.h"
#include "api/http/server.h"
#include "common/temp_dir.h"
#include "common/unix_socket.h"

namespace kiln::api::http::testing {

struct TestServer {
  TempDir dir;
  std::unique_ptr<Server> server;
  Endpoint unix_endpoint;
  Endpoint tcp_endpoint;

  Client client(bool tcp = false, ClientOptions options = {}) const {
    return Client(tcp ? tcp_endpoint : unix_endpoint, std::move(options));
  }
};

inline std::unique_ptr<TestServer> start_server(Router router, ServerOptions options = {}) {
  Result<TempDir> dir = TempDir::create("kiln-http-");
  EXPECT_TRUE(dir);
  auto test = std::make_unique<TestServer>(TestServer{.dir = std::move(*dir)});
  Result<std::unique_ptr<Server>> server = Server::create(std::move(router), options);
  EXPECT_TRUE(server);
  test->server = std::move(*server);
  Result<Endpoint> unix_endpoint = test->server->listen("unix://" + test->dir.path() + "/run/api.sock");
  EXPECT_TRUE(unix_endpoint) << (unix_endpoint ? "" : unix_endpoint.error().message());
  test->unix_endpoint = *unix_endpoint;
  Result<Endpoint> tcp_endpoint = test->server->listen("tcp://127.0.0.1:0");
  EXPECT_TRUE(tcp_endpoint) << (tcp_endpoint ? "" : tcp_endpoint.error().message());
  test->tcp_endpoint = *tcp_endpoint;
  return test;
}

// A connected socket to a test server's endpoint (unix, or tcp on 127.0.0.1).
inline UniqueFd connect_raw(const Endpoint& endpoint) {
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    Result<UniqueFd> fd = connect_unix_socket(endpoint.path);
    EXPECT_TRUE(fd);
    return fd ? std::move(*fd) : UniqueFd();
  }
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{.sin_family = AF_INET, .sin_port = htons(endpoint.port)};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  return fd;
}

inline void send_raw(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the tests that care look at what comes back
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads until `done(received)` holds, EOF, an error, or `timeout`.
template <typename Done>
std::string read_until(int fd, Done done,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  std::string received;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(received)) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{.fd = fd, .events = POLLIN};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[4096];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<size_t>(n));
  }
  return received;
}

inline std::string read_until_eof(int fd,
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  return read_until(
      fd, [](const std::string&) { return false; }, timeout);
}

inline std::string read_until_contains(int fd, std::string_view needle,
                                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  return read_until(
      fd, [&](const std::string& got) { return got.find(needle) != std::string::npos; }, timeout);
}

}  // namespace kiln::api::http::testing

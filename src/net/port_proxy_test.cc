#include "net/port_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

namespace kiln::net {
namespace {

using namespace std::chrono_literals;

Result<UniqueFd> plain_socket(int domain, int type) {
  UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, 0));
  if (!fd) return Error::last_os_error("socket");
  return fd;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

uint16_t local_port(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  return ntohs(address.sin_port);
}

void set_timeout(int fd) {
  timeval tv{.tv_sec = 20, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

UniqueFd connect_to(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  set_timeout(fd.get());
  auto address = loopback(port);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << errno;
  return fd;
}

// Reads until EOF (or error); the bytes read.
std::string read_all(int fd) {
  std::string out;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return out;
    out.append(buffer, static_cast<size_t>(n));
  }
}

// A TCP target on loopback. Per connection: `serve(fd)` on its own thread.
class TcpServer {
 public:
  explicit TcpServer(std::function<void(int)> serve) : serve_(std::move(serve)) {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto address = loopback(0);
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(listener_.get(), 512), 0);
    port_ = local_port(listener_.get());
    acceptor_ = std::thread([this] {
      for (;;) {
        int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0 || stopping_) {
          if (fd >= 0) ::close(fd);
          return;
        }
        accepted_++;
        std::lock_guard lock(mutex_);
        workers_.emplace_back([this, fd] {
          UniqueFd owned(fd);
          set_timeout(fd);
          serve_(fd);
        });
      }
    });
  }
  ~TcpServer() {
    stopping_ = true;
    ::shutdown(listener_.get(), SHUT_RDWR);
    acceptor_.join();
    std::lock_guard lock(mutex_);
    for (auto& worker : workers_) worker.join();
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  std::function<void(int)> serve_;
  UniqueFd listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> workers_;
};

// Echoes until EOF, then half-closes.
void echo(int fd) {
  char buffer[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    if (!write_all(fd, std::string_view(buffer, static_cast<size_t>(n)))) break;
  }
  ::shutdown(fd, SHUT_WR);
}

std::string random_bytes(size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

ProxySpec tcp_to(uint16_t target_port, uint16_t host_port = 0) {
  return ProxySpec{.protocol = "tcp",
                   .host_ip = "127.0.0.1",
                   .host_port = host_port,
                   .target_ip = "127.0.0.1",
                   .target_port = target_port};
}

template <typename F>
bool eventually(F condition) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

TEST(PortProxyTest, BulkTransferBothWaysIsExact) {
  TcpServer server(echo);
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener) << listener.error().message();
  UniqueFd client = connect_to((*listener)->port());
  std::string payload = random_bytes(16 << 20, 1);
  std::thread writer([&] {
    EXPECT_TRUE(write_all(client.get(), payload));
    ::shutdown(client.get(), SHUT_WR);
  });
  std::string echoed = read_all(client.get());
  writer.join();
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload);
}

TEST(PortProxyTest, HalfCloseReachesTheTargetAndTheReplyStillComesBack) {
  // The target answers only after the client's EOF: the proxy must pass the half-close on and keep the
  // other direction open.
  TcpServer server([](int fd) {
    std::string request = read_all(fd);
    std::string reply =
        "got " + std::to_string(request.size()) + " bytes:" + request + random_bytes(1 << 20, 7);
    (void)write_all(fd, reply);
  });
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  UniqueFd client = connect_to((*listener)->port());
  ASSERT_TRUE(write_all(client.get(), "hello"));
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  std::string reply = read_all(client.get());
  EXPECT_EQ(reply.size(), std::string("got 5 bytes:hello").size() + (1 << 20));
  EXPECT_EQ(reply.substr(0, 17), "got 5 bytes:hello");
  EXPECT_TRUE(eventually([&] { return (*listener)->active() == 0; }));
}

TEST(PortProxyTest, TheTargetsHalfCloseLeavesTheClientSending) {
  // The target says "bye" and half-closes at once, then keeps reading: the client sees "bye" and EOF and can
  // still send; the target gets every byte.
  std::atomic<size_t> received{0};
  TcpServer server([&](int fd) {
    (void)write_all(fd, "bye");
    ::shutdown(fd, SHUT_WR);
    received = read_all(fd).size();
  });
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  UniqueFd client = connect_to((*listener)->port());
  EXPECT_EQ(read_all(client.get()), "bye");
  ASSERT_TRUE(write_all(client.get(), random_bytes(4 << 20, 3)));
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_TRUE(eventually([&] { return received == size_t{4} << 20; })) << received;
  EXPECT_TRUE(eventually([&] { return (*listener)->active() == 0; }));
}

TEST(PortProxyTest, ATargetGoneBothWaysStillDeliversWhatItSentToASlowClient) {
  // The client half-closes; the target sends and closes completely (its fd then reports EPOLLHUP whatever
  // the proxy asks for) while the client does not read yet, so the proxy's buffer toward the client is full
  // with the target's fd parked. Everything must still arrive once the client reads.
  std::atomic<bool> done{false};
  std::string payload = random_bytes(2 << 20, 5);
  TcpServer server([&](int fd) {
    (void)read_all(fd);
    (void)write_all(fd, payload);
    done = true;
  });
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  UniqueFd client = connect_to((*listener)->port());
  ::shutdown(client.get(), SHUT_WR);
  // Not a synchronization the result depends on: only what makes the parked path likely (the target may
  // not get all of its bytes into the socket buffers before the client reads; then this waits 2 s).
  auto until = std::chrono::steady_clock::now() + 2s;
  while (!done && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(read_all(client.get()) == payload);
  EXPECT_TRUE(eventually([&] { return (*listener)->active() == 0; }));
}

TEST(PortProxyTest, ManyConcurrentConnections) {
  TcpServer server(echo);
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  constexpr int kClients = 64;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_to((*listener)->port()));
  for (int i = 0; i < kClients; ++i) ASSERT_TRUE(write_all(clients[i].get(), random_bytes(100000, i)));
  ASSERT_TRUE(eventually([&] { return (*listener)->active() == kClients; }));
  for (int i = 0; i < kClients; ++i) {
    ::shutdown(clients[i].get(), SHUT_WR);
    EXPECT_TRUE(read_all(clients[i].get()) == random_bytes(100000, i)) << i;
  }
  EXPECT_TRUE(eventually([&] { return (*listener)->active() == 0; }));
}

TEST(PortProxyTest, ATargetThatDoesNotReadStopsTheProxyReading) {
  std::atomic<bool> release{false};
  TcpServer server([&](int fd) {
    while (!release) std::this_thread::sleep_for(10ms);
    (void)read_all(fd);
  });
  PortProxy proxy(plain_socket, PortProxyOptions{.buffer_bytes = 64 * 1024});
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  UniqueFd client = connect_to((*listener)->port());
  ASSERT_TRUE(set_nonblocking(client.get()));
  // Write until the chain of buffers (client socket, proxy, target socket) is full: it must fill, which it
  // never would if the proxy kept reading without bound.
  std::string chunk(65536, 'x');
  size_t written = 0;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  int idle_rounds = 0;
  while (idle_rounds < 20 && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::send(client.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) {
      written += static_cast<size_t>(n);
      idle_rounds = 0;
    } else {
      ++idle_rounds;
      pollfd pfd{client.get(), POLLOUT, 0};
      ::poll(&pfd, 1, 50);
    }
  }
  EXPECT_EQ(idle_rounds, 20) << "the client could write without end: " << written << " bytes";
  EXPECT_LT(written, size_t{64} << 20);
  release = true;
}

TEST(PortProxyTest, AFailedConnectToTheTargetClosesTheClient) {
  // A port nothing listens on: bind a socket, take its port, close it.
  uint16_t dead_port;
  {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto address = loopback(0);
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    dead_port = local_port(probe.get());
  }
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(dead_port));
  ASSERT_TRUE(listener);
  UniqueFd client = connect_to((*listener)->port());
  char byte;
  EXPECT_LE(::recv(client.get(), &byte, 1, 0), 0);
  EXPECT_TRUE(eventually([&] { return (*listener)->active() == 0; }));
}

TEST(PortProxyTest, APortInUseFailsWithDockersText) {
  UniqueFd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto address = loopback(0);
  ASSERT_EQ(::bind(taken.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(taken.get(), 1), 0);
  uint16_t port = local_port(taken.get());
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(1, port));
  ASSERT_FALSE(listener);
  EXPECT_EQ(listener.error().message(), "Error starting userland proxy: listen tcp4 127.0.0.1:" +
                                            std::to_string(port) + ": bind: address already in use");

  UniqueFd taken_udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(taken_udp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  uint16_t udp_port = local_port(taken_udp.get());
  auto udp = proxy.listen(
      ProxySpec{.protocol = "udp", .host_port = udp_port, .target_ip = "127.0.0.1", .target_port = 1});
  ASSERT_FALSE(udp);
  EXPECT_EQ(udp.error().message(), "Error starting userland proxy: listen udp4 0.0.0.0:" +
                                       std::to_string(udp_port) + ": bind: address already in use");
}

TEST(PortProxyTest, APortHeldByAnotherForwardIsAlreadyAllocatedAsDockerdSays) {
  // dockerd 20.10: `docker run -p 18200:80` twice: "Bind for 0.0.0.0:18200 failed: port is already
  // allocated"; with 127.0.0.1:18200 the second time, its allocator sees another address and the proxy's bind
  // fails.
  TcpServer server(echo);
  PortProxy proxy(plain_socket);
  auto first =
      proxy.listen(ProxySpec{.protocol = "tcp", .target_ip = "127.0.0.1", .target_port = server.port()});
  ASSERT_TRUE(first);
  uint16_t port = (*first)->port();
  auto again = proxy.listen(
      ProxySpec{.protocol = "tcp", .host_port = port, .target_ip = "127.0.0.1", .target_port = 1});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(),
            "Bind for 0.0.0.0:" + std::to_string(port) + " failed: port is already allocated");
  auto other_ip = proxy.listen(ProxySpec{.protocol = "tcp",
                                         .host_ip = "127.0.0.1",
                                         .host_port = port,
                                         .target_ip = "127.0.0.1",
                                         .target_port = 1});
  ASSERT_FALSE(other_ip);
  EXPECT_EQ(other_ip.error().message(), "Error starting userland proxy: listen tcp4 127.0.0.1:" +
                                            std::to_string(port) + ": bind: address already in use");
  // UDP on the same number is another port; and once the first forward is gone the port is free again.
  EXPECT_TRUE(proxy.listen(
      ProxySpec{.protocol = "udp", .host_port = port, .target_ip = "127.0.0.1", .target_port = 1}));
  first->reset();
  EXPECT_TRUE(proxy.listen(
      ProxySpec{.protocol = "tcp", .host_port = port, .target_ip = "127.0.0.1", .target_port = 1}));
}

TEST(PortProxyTest, PortZeroPicksFromTheKernelsEphemeralRangeAsDockerd) {
  // dockerd 20.10 gave 32768, 32769... here: its allocator takes /proc/sys/net/ipv4/ip_local_port_range.
  unsigned first = 49153, last = 60999;
  if (auto text = read_file("/proc/sys/net/ipv4/ip_local_port_range")) {
    ASSERT_EQ(std::sscanf(text->c_str(), "%u %u", &first, &last), 2);
  }
  PortProxy proxy(plain_socket);
  TcpServer server(echo);
  auto one = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_GE((*one)->port(), first);
  EXPECT_LE((*one)->port(), last);
  auto two = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(two);
  EXPECT_NE((*two)->port(), (*one)->port());
  UniqueFd client = connect_to((*two)->port());
  ASSERT_TRUE(write_all(client.get(), "ping"));
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(read_all(client.get()), "ping");
}

TEST(PortProxyTest, PortZeroSkipsPortsInUseAndFailsWhenTheRangeIsFull) {
  TcpServer server(echo);
  UniqueFd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto address = loopback(0);
  ASSERT_EQ(::bind(taken.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(taken.get(), 1), 0);
  uint16_t port = local_port(taken.get());
  PortProxy narrow(plain_socket, PortProxyOptions{.ephemeral_first = port, .ephemeral_last = port});
  auto none = narrow.listen(tcp_to(server.port()));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "all ports are allocated");

  // A host port range (docker run -p 18100-18110:80): the first free one.
  PortProxy proxy(plain_socket);
  auto ranged = proxy.listen(ProxySpec{.protocol = "tcp",
                                       .host_ip = "127.0.0.1",
                                       .host_port = port,
                                       .host_port_last = static_cast<uint16_t>(port + 20),
                                       .target_ip = "127.0.0.1",
                                       .target_port = server.port()});
  ASSERT_TRUE(ranged) << ranged.error().message();
  EXPECT_GT((*ranged)->port(), port);
  EXPECT_LE((*ranged)->port(), port + 20);
  auto full = proxy.listen(ProxySpec{.protocol = "tcp",
                                     .host_ip = "127.0.0.1",
                                     .host_port = port,
                                     .host_port_last = port,
                                     .target_ip = "127.0.0.1",
                                     .target_port = 1});
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().message(), "Error starting userland proxy: listen tcp4 127.0.0.1:" +
                                        std::to_string(port) + ": bind: address already in use");
}

TEST(PortProxyTest, DestroyingTheListenerStopsListeningAndClosesItsConnections) {
  TcpServer server(echo);
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  uint16_t port = (*listener)->port();
  UniqueFd client = connect_to(port);
  ASSERT_TRUE(write_all(client.get(), "x"));
  char byte;
  ASSERT_EQ(::recv(client.get(), &byte, 1, 0), 1);
  listener->reset();
  // The open connection ends...
  EXPECT_LE(::recv(client.get(), &byte, 1, 0), 0);
  // ...and nothing listens any more.
  UniqueFd again(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto address = loopback(port);
  EXPECT_NE(::connect(again.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  EXPECT_EQ(errno, ECONNREFUSED);
}

TEST(PortProxyTest, ListenersMayOutliveTheProxy) {
  TcpServer server(echo);
  std::unique_ptr<ProxyListener> listener;
  {
    PortProxy proxy(plain_socket);
    listener = std::move(*proxy.listen(tcp_to(server.port())));
  }
  UniqueFd client = connect_to(listener->port());
  ASSERT_TRUE(write_all(client.get(), "still here"));
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(read_all(client.get()), "still here");
}

// A UDP target that answers each datagram with "reply:<datagram>".
class UdpEcho {
 public:
  UdpEcho() {
    fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    auto address = loopback(0);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    port_ = local_port(fd_.get());
    thread_ = std::thread([this] {
      char buffer[65536];
      for (;;) {
        sockaddr_in from{};
        socklen_t length = sizeof from;
        ssize_t n =
            ::recvfrom(fd_.get(), buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &length);
        if (n < 0 || std::string_view(buffer, static_cast<size_t>(n)) == "stop") return;
        std::string reply = "reply:" + std::string(buffer, static_cast<size_t>(n));
        ::sendto(fd_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), length);
      }
    });
  }
  ~UdpEcho() {
    UniqueFd stopper(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    auto address = loopback(port_);
    ::sendto(stopper.get(), "stop", 4, 0, reinterpret_cast<sockaddr*>(&address), sizeof address);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::thread thread_;
};

UniqueFd udp_client() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  set_timeout(fd.get());
  return fd;
}

std::string udp_round_trip(int fd, uint16_t port, const std::string& message,
                           uint16_t* reply_port = nullptr) {
  auto address = loopback(port);
  ::sendto(fd, message.data(), message.size(), 0, reinterpret_cast<sockaddr*>(&address), sizeof address);
  char buffer[65536];
  sockaddr_in from{};
  socklen_t length = sizeof from;
  ssize_t n = ::recvfrom(fd, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &length);
  if (reply_port) *reply_port = ntohs(from.sin_port);
  return n < 0 ? "" : std::string(buffer, static_cast<size_t>(n));
}

TEST(PortProxyTest, UdpRepliesGoToTheirOwnClientFromTheListeningPort) {
  UdpEcho target;
  PortProxy proxy(plain_socket);
  auto listener = proxy.listen(ProxySpec{
      .protocol = "udp", .host_ip = "127.0.0.1", .target_ip = "127.0.0.1", .target_port = target.port()});
  ASSERT_TRUE(listener) << listener.error().message();
  uint16_t port = (*listener)->port();
  UniqueFd a = udp_client();
  UniqueFd b = udp_client();
  uint16_t from = 0;
  EXPECT_EQ(udp_round_trip(a.get(), port, "from a", &from), "reply:from a");
  EXPECT_EQ(from, port);
  EXPECT_EQ(udp_round_trip(b.get(), port, "from b"), "reply:from b");
  EXPECT_EQ(udp_round_trip(a.get(), port, "again a"), "reply:again a");
  EXPECT_EQ((*listener)->active(), 2u);
}

TEST(PortProxyTest, IdleUdpFlowsExpire) {
  UdpEcho target;
  PortProxy proxy(plain_socket, PortProxyOptions{.udp_idle_timeout = 200ms});
  auto listener = proxy.listen(ProxySpec{
      .protocol = "udp", .host_ip = "127.0.0.1", .target_ip = "127.0.0.1", .target_port = target.port()});
  ASSERT_TRUE(listener);
  UniqueFd a = udp_client();
  EXPECT_EQ(udp_round_trip(a.get(), (*listener)->port(), "x"), "reply:x");
  EXPECT_TRUE(eventually([&] { return (*listener)->active() == 0; }));
  // A new flow starts on the next datagram.
  EXPECT_EQ(udp_round_trip(a.get(), (*listener)->port(), "y"), "reply:y");
}

TEST(PortProxyTest, TargetSocketsComeFromTheFactory) {
  TcpServer server(echo);
  std::atomic<int> made{0};
  PortProxy proxy([&](int domain, int type) {
    made++;
    return plain_socket(domain, type);
  });
  auto listener = proxy.listen(tcp_to(server.port()));
  ASSERT_TRUE(listener);
  UniqueFd client = connect_to((*listener)->port());
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(read_all(client.get()), "");
  EXPECT_EQ(made, 1);

  PortProxy failing([](int, int) -> Result<UniqueFd> { return Error::unavailable("no namespace"); });
  auto refused = failing.listen(tcp_to(server.port()));
  ASSERT_TRUE(refused);
  UniqueFd closed = connect_to((*refused)->port());
  char byte;
  EXPECT_LE(::recv(closed.get(), &byte, 1, 0), 0);
}

TEST(PortProxyTest, BadSpecsAreRefused) {
  PortProxy proxy(plain_socket);
  EXPECT_FALSE(proxy.listen(ProxySpec{.protocol = "sctp", .target_ip = "127.0.0.1", .target_port = 1}));
  EXPECT_FALSE(proxy.listen(ProxySpec{.protocol = "tcp", .host_ip = "nope", .target_ip = "127.0.0.1"}));
  EXPECT_FALSE(proxy.listen(ProxySpec{.protocol = "tcp", .target_ip = "1.2.3"}));
}

}  // namespace
}  // namespace kiln::net

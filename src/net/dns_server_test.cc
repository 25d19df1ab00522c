#include "net/dns_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <random>
#include <thread>
#include <tuple>

#include "net/dns_message.h"

namespace kiln::net {
namespace {

using namespace std::chrono_literals;

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

UniqueFd bound(int type, uint16_t port = 0) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  auto address = loopback(port);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << errno;
  if (type == SOCK_STREAM) {
    EXPECT_EQ(::listen(fd.get(), 64), 0);
  }
  return fd;
}

// A UDP socket and a listening TCP socket on one port number, as a DNS server has: the kernel picks the UDP
// port, which may be taken for TCP (another test's connection); then another is picked.
std::pair<UniqueFd, UniqueFd> bound_pair() {
  for (int attempt = 0; attempt < 100; ++attempt) {
    UniqueFd udp = bound(SOCK_DGRAM);
    UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto address = loopback(local_port(udp.get()));
    if (::bind(tcp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
        ::listen(tcp.get(), 64) == 0)
      return {std::move(udp), std::move(tcp)};
  }
  ADD_FAILURE() << "no port free for both UDP and TCP";
  return {};
}

void put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

std::string wire_name(std::string_view dotted) {
  return dns::name_rdata(dotted);
}

std::string make_query(uint16_t id, std::string_view name, uint16_t type, uint16_t edns_size = 0) {
  std::string out;
  put16(out, id);
  put16(out, 0x0100);
  put16(out, 1);
  put16(out, 0);
  put16(out, 0);
  put16(out, edns_size ? 1 : 0);
  out += wire_name(name);
  put16(out, type);
  put16(out, dns::kClassIn);
  if (edns_size) {
    out.push_back('\0');
    put16(out, dns::kTypeOpt);
    put16(out, edns_size);
    out += std::string(6, '\0');
  }
  return out;
}

uint16_t read16(std::string_view m, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(m[at]) << 8) | static_cast<uint8_t>(m[at + 1]));
}

struct Reply {
  uint16_t id = 0;
  int rcode = -1;
  bool truncated = false;
  uint32_t ttl = 0;
  std::vector<std::string> rdata;  // A: dotted, PTR: raw wire name
};

// Reads a reply whose answers follow one question and are named by a pointer (ours and the fake's).
Reply parse_reply(std::string_view m) {
  Reply reply;
  if (m.size() < 12) return reply;
  reply.id = read16(m, 0);
  reply.rcode = m[3] & 0x0F;
  reply.truncated = read16(m, 2) & 0x0200;
  uint16_t answers = read16(m, 6);
  if (read16(m, 4) == 0) return reply;
  auto query = dns::parse_query(std::string(m.substr(0, 12)).replace(6, 6, std::string(6, '\0')) +
                                std::string(m.substr(12)));
  if (!query) return reply;
  size_t at = query->question_end;
  for (uint16_t i = 0; i < answers && at + 12 <= m.size(); ++i) {
    uint16_t type = read16(m, at + 2);
    reply.ttl = (uint32_t{read16(m, at + 6)} << 16) | read16(m, at + 8);
    uint16_t length = read16(m, at + 10);
    std::string rdata(m.substr(at + 12, length));
    if (type == dns::kTypeA && length == 4) {
      char text[INET_ADDRSTRLEN];
      ::inet_ntop(AF_INET, rdata.data(), text, sizeof text);
      rdata = text;
    }
    reply.rdata.push_back(rdata);
    at += 12 + length;
  }
  return reply;
}

// A resolver on loopback: "example.com" has one A record; "big.example" has 100 (truncated over UDP);
// "slow.example" is never answered. Counts what it gets over each transport.
class FakeUpstream {
 public:
  FakeUpstream() {
    std::tie(udp_, tcp_) = bound_pair();
    port_ = local_port(udp_.get());
    thread_ = std::thread([this] { run(); });
  }
  ~FakeUpstream() {
    stopping_ = true;
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int udp_queries() const { return udp_queries_; }
  int tcp_queries() const { return tcp_queries_; }

 private:
  static std::string answer(std::string_view query_bytes, bool over_tcp) {
    auto query = dns::parse_query(query_bytes);
    if (!query) return "";
    const std::string& name = query->question.name;
    if (name == "slow.example") return "";
    std::vector<dns::Answer> answers;
    if (name == "example.com") answers.push_back({dns::kTypeA, 30, *dns::a_rdata("93.184.216.34")});
    if (name == "big.example") {
      for (int i = 0; i < 100; ++i)
        answers.push_back({dns::kTypeA, 30, *dns::a_rdata("10.1.0." + std::to_string(i))});
    }
    std::string reply = dns::make_reply(
        *query, query_bytes, answers.empty() ? dns::Rcode::kNxDomain : dns::Rcode::kNoError, answers);
    if (!over_tcp && reply.size() > 512) {
      reply = dns::make_reply(*query, query_bytes, dns::Rcode::kNoError, {});
      reply[2] = static_cast<char>(reply[2] | 0x02);  // TC
    }
    return reply;
  }

  void run() {
    while (!stopping_) {
      pollfd fds[2] = {{udp_.get(), POLLIN, 0}, {tcp_.get(), POLLIN, 0}};
      if (::poll(fds, 2, 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        char buffer[65536];
        sockaddr_in from{};
        socklen_t length = sizeof from;
        ssize_t n =
            ::recvfrom(udp_.get(), buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &length);
        if (n > 0) {
          udp_queries_++;
          std::string reply = answer(std::string_view(buffer, static_cast<size_t>(n)), false);
          if (!reply.empty())
            ::sendto(udp_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), length);
        }
      }
      if (fds[1].revents & POLLIN) {
        UniqueFd client(::accept4(tcp_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        timeval tv{.tv_sec = 5, .tv_usec = 0};
        ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char length_bytes[2];
        if (!read_exact(client.get(), length_bytes)) continue;
        std::string query(read16(std::string_view(length_bytes, 2), 0), '\0');
        if (!read_exact(client.get(), query)) continue;
        tcp_queries_++;
        std::string reply = answer(query, true);
        if (reply.empty()) continue;
        std::string out;
        put16(out, static_cast<uint16_t>(reply.size()));
        (void)write_all(client.get(), out + reply);
      }
    }
  }

  UniqueFd udp_;
  UniqueFd tcp_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> udp_queries_{0};
  std::atomic<int> tcp_queries_{0};
  std::thread thread_;
};

NameLookup test_network() {
  NameLookup lookup;
  lookup.network_name = "mynet";
  lookup.forward = [](std::string_view name, std::string_view /*client_ip*/) -> std::vector<std::string> {
    if (name == "web") return {"172.18.0.2", "172.18.0.3"};
    if (name == "db") return {"172.18.0.4"};
    return {};
  };
  lookup.reverse = [](std::string_view ip) -> std::optional<std::string> {
    if (ip == "172.18.0.4") return "db.mynet";
    return std::nullopt;
  };
  return lookup;
}

// A zone on loopback ports.
struct TestZone {
  explicit TestZone(DnsServer& server, NameLookup lookup = test_network()) {
    auto [udp, tcp] = bound_pair();
    udp_port = local_port(udp.get());
    auto served = server.serve(std::move(udp), std::move(tcp), std::move(lookup));
    EXPECT_TRUE(served) << served.error().message();
    zone = std::move(*served);
  }
  uint16_t udp_port = 0;
  std::unique_ptr<DnsZone> zone;
};

std::string ask_udp(uint16_t port, std::string_view query, int timeout_seconds = 10) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{.tv_sec = timeout_seconds, .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto address = loopback(port);
  ::sendto(fd.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&address), sizeof address);
  char buffer[65536];
  ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
  return n < 0 ? "" : std::string(buffer, static_cast<size_t>(n));
}

UniqueFd tcp_connect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto address = loopback(port);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  return fd;
}

std::string read_frame(int fd) {
  char length_bytes[2];
  if (!read_exact(fd, length_bytes)) return "";
  std::string reply(read16(std::string_view(length_bytes, 2), 0), '\0');
  if (!read_exact(fd, reply)) return "";
  return reply;
}

std::string ask_tcp(int fd, std::string_view query) {
  std::string out;
  put16(out, static_cast<uint16_t>(query.size()));
  out += query;
  if (!write_all(fd, out)) return "";
  char length_bytes[2];
  if (!read_exact(fd, length_bytes)) return "";
  std::string reply(read16(std::string_view(length_bytes, 2), 0), '\0');
  if (!read_exact(fd, reply)) return "";
  return reply;
}

TEST(DnsServerTest, AnswersTheNetworksNamesWithDockersTtl) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  Reply reply = parse_reply(ask_udp(zone.udp_port, make_query(0xBEEF, "web", dns::kTypeA)));
  EXPECT_EQ(reply.id, 0xBEEF);
  EXPECT_EQ(reply.rcode, 0);
  EXPECT_EQ(reply.ttl, 600u);
  ASSERT_EQ(reply.rdata.size(), 2u);
  std::sort(reply.rdata.begin(), reply.rdata.end());
  EXPECT_EQ(reply.rdata, (std::vector<std::string>{"172.18.0.2", "172.18.0.3"}));
  // Case does not matter, nor a trailing dot; NAME.NETWORK is the same name.
  EXPECT_EQ(parse_reply(ask_udp(zone.udp_port, make_query(1, "DB.", dns::kTypeA))).rdata,
            std::vector<std::string>{"172.18.0.4"});
  EXPECT_EQ(parse_reply(ask_udp(zone.udp_port, make_query(2, "db.mynet", dns::kTypeA))).rdata,
            std::vector<std::string>{"172.18.0.4"});
  EXPECT_EQ(upstream.udp_queries(), 0);
}

TEST(DnsServerTest, AaaaOfAKnownNameIsAnEmptyAnswer) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  Reply reply = parse_reply(ask_udp(zone.udp_port, make_query(3, "web", dns::kTypeAaaa)));
  EXPECT_EQ(reply.rcode, 0);
  EXPECT_TRUE(reply.rdata.empty());
  EXPECT_EQ(upstream.udp_queries(), 0);
}

TEST(DnsServerTest, PtrOfAKnownAddress) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  Reply reply = parse_reply(ask_udp(zone.udp_port, make_query(4, "4.0.18.172.in-addr.arpa", dns::kTypePtr)));
  EXPECT_EQ(reply.rcode, 0);
  ASSERT_EQ(reply.rdata.size(), 1u);
  EXPECT_EQ(reply.rdata[0], std::string("\x02"
                                        "db\x05mynet\x00",
                                        10));
  // An address that is not ours goes upstream (which does not know it either).
  Reply other = parse_reply(ask_udp(zone.udp_port, make_query(5, "9.0.18.172.in-addr.arpa", dns::kTypePtr)));
  EXPECT_EQ(other.rcode, 3);
  EXPECT_EQ(upstream.udp_queries(), 1);
}

TEST(DnsServerTest, OtherNamesAreForwardedUnderTheClientsId) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  Reply reply = parse_reply(ask_udp(zone.udp_port, make_query(0x4242, "example.com", dns::kTypeA)));
  EXPECT_EQ(reply.id, 0x4242);
  EXPECT_EQ(reply.rcode, 0);
  EXPECT_EQ(reply.rdata, std::vector<std::string>{"93.184.216.34"});
  EXPECT_EQ(parse_reply(ask_udp(zone.udp_port, make_query(6, "nope.example", dns::kTypeA))).rcode, 3);
  EXPECT_EQ(upstream.udp_queries(), 2);
}

TEST(DnsServerTest, ATruncatedUpstreamReplyIsRetriedOverTcp) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  // An EDNS client that takes 4096 bytes gets the whole answer fetched over TCP...
  Reply big = parse_reply(ask_udp(zone.udp_port, make_query(7, "big.example", dns::kTypeA, 4096)));
  EXPECT_FALSE(big.truncated);
  EXPECT_EQ(big.rdata.size(), 100u);
  EXPECT_EQ(upstream.tcp_queries(), 1);
  // ...a plain one, limited to 512 bytes, gets the truncated reply (and asks over TCP itself).
  Reply small = parse_reply(ask_udp(zone.udp_port, make_query(8, "big.example", dns::kTypeA)));
  EXPECT_TRUE(small.truncated);
  EXPECT_EQ(small.id, 8);
}

TEST(DnsServerTest, TcpClientsAreAnsweredAndForwardedOverTcp) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  UniqueFd client = tcp_connect(zone.udp_port);
  EXPECT_EQ(parse_reply(ask_tcp(client.get(), make_query(9, "db", dns::kTypeA))).rdata,
            std::vector<std::string>{"172.18.0.4"});
  Reply big = parse_reply(ask_tcp(client.get(), make_query(10, "big.example", dns::kTypeA)));
  EXPECT_EQ(big.id, 10);
  EXPECT_EQ(big.rdata.size(), 100u);
  EXPECT_EQ(upstream.tcp_queries(), 1);
  EXPECT_EQ(upstream.udp_queries(), 0);
}

TEST(DnsServerTest, UpstreamFailuresAreServfailAndTheNextUpstreamIsTried) {
  FakeUpstream upstream;
  uint16_t dead_port = local_port(bound(SOCK_DGRAM).get());  // closed at once: nothing listens there
  DnsServer server({"127.0.0.1:" + std::to_string(dead_port), upstream.address()},
                   DnsServerOptions{.upstream_timeout = 300ms});
  TestZone zone(server);
  EXPECT_EQ(parse_reply(ask_udp(zone.udp_port, make_query(11, "example.com", dns::kTypeA))).rdata,
            std::vector<std::string>{"93.184.216.34"});
  // No answer from anyone within the timeout.
  Reply slow = parse_reply(ask_udp(zone.udp_port, make_query(12, "slow.example", dns::kTypeA)));
  EXPECT_EQ(slow.id, 12);
  EXPECT_EQ(slow.rcode, 2);

  DnsServer lonely({"127.0.0.1:" + std::to_string(dead_port)});
  TestZone lonely_zone(lonely);
  EXPECT_EQ(parse_reply(ask_udp(lonely_zone.udp_port, make_query(13, "example.com", dns::kTypeA))).rcode, 2);
  UniqueFd client = tcp_connect(lonely_zone.udp_port);
  EXPECT_EQ(parse_reply(ask_tcp(client.get(), make_query(14, "example.com", dns::kTypeA))).rcode, 2);
}

TEST(DnsServerTest, MalformedQueriesGetFormerrOrNothingAndTheServerKeepsServing) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  TestZone zone(server);
  // A header with no question: FORMERR under its id.
  std::string no_question = make_query(15, "web", dns::kTypeA).substr(0, 12);
  no_question[5] = 0;
  Reply formerr = parse_reply(ask_udp(zone.udp_port, no_question));
  EXPECT_EQ(formerr.id, 15);
  EXPECT_EQ(formerr.rcode, 1);

  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto address = loopback(zone.udp_port);
  std::mt19937 rng(1);
  std::string base = make_query(16, "web.mynet", dns::kTypeA, 1232);
  for (int i = 0; i < 3000; ++i) {
    std::string m;
    if (i % 2) {
      m.resize(rng() % 600);
      for (auto& c : m) c = static_cast<char>(rng());
    } else {
      m = base;
      for (auto flips = 1 + rng() % 4; flips > 0; --flips) m[rng() % m.size()] = static_cast<char>(rng());
    }
    ::sendto(fd.get(), m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  // Garbage over TCP too: a frame of random bytes, then a real query on the same connection (answered: the
  // framing survives the garbage), then a frame cut short and a hang-up.
  {
    UniqueFd client = tcp_connect(zone.udp_port);
    std::string junk("\x00\x20", 2);
    for (int i = 0; i < 32; ++i) junk.push_back(static_cast<char>(rng()));
    ASSERT_TRUE(write_all(client.get(), junk));
    Reply answer;
    for (int frames = 0; frames < 2 && answer.id != 20; ++frames) {
      std::string reply =
          frames == 0 ? ask_tcp(client.get(), make_query(20, "db", dns::kTypeA)) : read_frame(client.get());
      answer = parse_reply(reply);
    }
    EXPECT_EQ(answer.id, 20);
    EXPECT_EQ(answer.rdata, std::vector<std::string>{"172.18.0.4"});
    (void)write_all(client.get(), "\xff\xffpartial");
  }
  // The flood may have filled the socket's buffer, which drops datagrams as a network would: ask again as a
  // resolver does.
  Reply still;
  for (int attempt = 0; attempt < 5 && still.id != 17; ++attempt)
    still = parse_reply(ask_udp(zone.udp_port, make_query(17, "web", dns::kTypeA), 2));
  EXPECT_EQ(still.id, 17);
  EXPECT_EQ(still.rdata.size(), 2u);
}

TEST(DnsServerTest, DestroyingTheZoneClosesItsSockets) {
  FakeUpstream upstream;
  DnsServer server({upstream.address()});
  auto zone = std::make_unique<TestZone>(server);
  uint16_t port = zone->udp_port;
  EXPECT_EQ(parse_reply(ask_udp(port, make_query(18, "db", dns::kTypeA))).rcode, 0);
  zone.reset();
  // Both ports are free again.
  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto address = loopback(port);
  EXPECT_EQ(::bind(udp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_NE(::connect(tcp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
}

TEST(DnsServerTest, ResolvConfNameservers) {
  EXPECT_EQ(
      nameservers_of_resolv_conf("# comment\nnameserver 127.0.0.53\nsearch lan\n  nameserver\t10.0.0.1 # x\n"
                                 "nameserver fe80::1%eth0\nnameserver ::1\nnameservers 1.1.1.1\n"),
      (std::vector<std::string>{"127.0.0.53:53", "10.0.0.1:53", "[::1]:53"}));
  DnsServer server({"10.0.0.1", "10.0.0.2:5353", "[::1]:54", "bogus"});
  EXPECT_EQ(server.upstream(), (std::vector<std::string>{"10.0.0.1:53", "10.0.0.2:5353", "[::1]:54"}));
}

}  // namespace
}  // namespace kiln::net

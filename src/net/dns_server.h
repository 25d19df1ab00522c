// DnsServer: the embedded DNS server of user-defined networks (what Docker's 127.0.0.11 resolver does). Each
// network gets a DnsZone: it answers the names of the network's containers (A, TTL 600 as Docker) and their
// addresses (PTR), and forwards every other question to the upstream resolvers (the host's), from kilnd's
// own namespace. One thread serves every zone of a DnsServer.
//
// Thread-safety: serve() from any thread; a DnsZone may be destroyed on any thread (not from inside its
// own lookup callbacks). The NameLookup callbacks run on the server's thread and must not block for long.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::net {

struct NameLookup {
  // The IPv4 addresses of `name` (lowercased, no trailing dot) for the client at `client_ip` ("" if not
  // known): on this network, or (as Docker's resolver) on another network that client is on too; empty: not
  // one of ours.
  std::function<std::vector<std::string>(std::string_view name, std::string_view client_ip)> forward;
  // The name of `ipv4` on this network as a PTR answers it (Docker: "web.mynet"), or nothing.
  std::function<std::optional<std::string>(std::string_view ipv4)> reverse;
  // The network's name: as in Docker, "web.mynet" is asked as "web" when the network is "mynet". Empty: off.
  std::string network_name;
};

struct DnsServerOptions {
  std::chrono::milliseconds upstream_timeout{4000};  // per upstream attempt (Docker's extIOTimeout)
  size_t max_pending = 256;     // forwarded queries in flight per zone; more are answered SERVFAIL
  size_t max_tcp_clients = 64;  // per zone; more are closed at accept
  std::chrono::milliseconds tcp_idle_timeout{10000};
};

class DnsZone;
namespace detail {
class DnsCore;
}

class DnsServer {
 public:
  // `upstream`: "ip" or "ip:port" ("[v6]:port"); empty: the nameservers of the host's /etc/resolv.conf.
  // Aborts if the host cannot give the server's thread an epoll fd.
  explicit DnsServer(std::vector<std::string> upstream = {}, DnsServerOptions options = {});
  ~DnsServer();
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  // Serves queries arriving on `udp` (a bound datagram socket) and `tcp_listening` (a listening stream
  // socket; may be invalid: UDP only) until the zone is destroyed.
  Result<std::unique_ptr<DnsZone>> serve(UniqueFd udp, UniqueFd tcp_listening, NameLookup lookup);

  // The upstreams in use ("ip:port"), after defaults.
  const std::vector<std::string>& upstream() const { return upstream_; }

 private:
  std::vector<std::string> upstream_;
  std::shared_ptr<detail::DnsCore> core_;
};

class DnsZone {
 public:
  ~DnsZone();  // stops serving and closes both sockets
  DnsZone(const DnsZone&) = delete;
  DnsZone& operator=(const DnsZone&) = delete;

 private:
  friend class DnsServer;
  DnsZone(std::shared_ptr<detail::DnsCore> core, uint64_t id) : core_(std::move(core)), id_(id) {}
  std::shared_ptr<detail::DnsCore> core_;
  uint64_t id_;
};

// The nameservers of a resolv.conf text, as "ip:53".
std::vector<std::string> nameservers_of_resolv_conf(std::string_view text);

}  // namespace kiln::net

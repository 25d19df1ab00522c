// What NetworkManager needs from the rest of kilnd's networking, as small interfaces so that it can be tested
// with fakes and so that the implementations (net::Fabric, net::DnsServer, net::PortProxy) plug in with a
// few lines in daemon.cc (see fabric_adapter.h). Implementations must be thread-safe: NetworkManager calls
// them from HTTP connection threads and from VmManager's start and stop paths.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::daemon::networks {

// Kiln's network namespace (net::Fabric): bridges, taps and sockets in it.
class NetworkFabric {
 public:
  virtual ~NetworkFabric() = default;
  // Idempotent; `gateway_cidr` is "172.18.0.1/16".
  virtual Result<void> ensure_bridge(const std::string& name, const std::string& gateway_cidr,
                                     bool internal) = 0;
  // Absent: ok.
  virtual Result<void> remove_bridge(const std::string& name) = 0;
  // A tap on `bridge`; its name in `name`.
  virtual Result<UniqueFd> open_tap(const std::string& bridge, std::string* name) = 0;
  // A tap on no bridge (a spare NIC slot); its name in `name`.
  virtual Result<UniqueFd> open_detached_tap(std::string* name) = 0;
  // Puts an existing tap on `bridge`, or takes it off (a tap already gone: ok).
  virtual Result<void> attach_tap(const std::string& tap, const std::string& bridge) = 0;
  virtual Result<void> detach_tap(const std::string& tap, const std::string& bridge) = 0;
  // A socket inside the namespace bound to ipv4:port (a DNS zone's listeners on its gateway); `type`
  // SOCK_DGRAM, or SOCK_STREAM, then also listening.
  virtual Result<UniqueFd> bound_socket(int type, const std::string& ipv4, uint16_t port) = 0;
  // The names of the bridges in the namespace (to clear what a crash left).
  virtual Result<std::vector<std::string>> bridges() = 0;
};

// Whatever keeps a DNS zone or a published port alive: dropping the last copy stops it, and once that
// returns no lookup of that zone runs any more (NetworkManager's lookups capture the manager). Never dropped
// while holding a lock that a name lookup takes (NetworkManager never does).
using ServiceHandle = std::shared_ptr<void>;

// The names a network's DNS server answers, field for field net::NameLookup (src/net/dns_server.h): a name's
// IPv4 addresses, and an address's PTR name ("web.mynet"). Called from the DNS server's thread.
struct NameLookup {
  std::function<std::vector<std::string>(std::string_view name, std::string_view client_ip)> forward;
  std::function<std::optional<std::string>(std::string_view ipv4)> reverse;
  std::string network_name;  // "web.mynet" is also asked as "web"; empty: off
};

// The embedded DNS server (net::DnsServer): answers `lookup`'s names on the two sockets (made with
// NetworkFabric::bound_socket, bound to the network's gateway port 53, the TCP one listening) and forwards
// everything else to the host's resolvers, until the handle is dropped.
class DnsService {
 public:
  virtual ~DnsService() = default;
  virtual Result<ServiceHandle> serve(UniqueFd udp, UniqueFd tcp_listening, NameLookup lookup) = 0;
};

struct ProxySpec {
  std::string protocol = "tcp";  // "tcp" or "udp"
  std::string host_ip;           // "" : all addresses
  uint16_t host_port = 0;        // 0: any free port
  uint16_t host_port_last = 0;   // > host_port: the first free port of host_port..host_port_last
  std::string target_ip;         // the guest's address in Kiln's namespace
  uint16_t target_port = 0;
};

struct ProxyListener {
  ServiceHandle handle;
  uint16_t port = 0;  // the host port it listens on (chosen when the spec said 0)
};

// The port proxy (net::PortProxy): listens on the host and connects into Kiln's namespace. The error of a
// port in use is dockerd's text after its endpoint prefix ("Error starting userland proxy: listen tcp4
// 0.0.0.0:8080: bind: address already in use"), which attach() puts in front.
class PortPublisher {
 public:
  virtual ~PortPublisher() = default;
  virtual Result<ProxyListener> listen(const ProxySpec& spec) = 0;
};

}  // namespace kiln::daemon::networks

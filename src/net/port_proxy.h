// PortProxy: kilnd's userland port proxy (what docker-proxy does for dockerd). It listens on the host side
// and relays each TCP connection or UDP flow to a guest address; the sockets toward the guest come from a
// SocketFactory (in kilnd Fabric::socket, so they live in Kiln's network namespace). One epoll thread serves
// every forward of one PortProxy.
//
// Thread-safety: listen() from any thread; a ProxyListener may be destroyed on any thread. Destroying a
// ProxyListener closes its listening socket and every connection and flow it carries before returning.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::net {

// Makes a socket toward the guest (domain AF_INET/AF_INET6, type SOCK_STREAM/SOCK_DGRAM).
using SocketFactory = std::function<Result<UniqueFd>(int domain, int type)>;

struct ProxySpec {
  std::string protocol = "tcp";  // "tcp" or "udp"
  std::string host_ip;           // "" = 0.0.0.0
  uint16_t host_port = 0;        // 0 = a free port of Docker's ephemeral range
  uint16_t host_port_last = 0;   // > host_port: the first free port of host_port..host_port_last
  std::string target_ip;
  uint16_t target_port = 0;
};

struct PortProxyOptions {
  std::chrono::milliseconds udp_idle_timeout{90'000};  // docker-proxy's UDPConnTrackTimeout
  size_t buffer_bytes = 64 * 1024;                     // per direction of a TCP connection
  size_t max_udp_flows = 1024;                         // per UDP forward; more clients are dropped
  // The range host_port 0 picks from. 0: as dockerd's port allocator, the kernel's ip_local_port_range
  // (32768-60999 by default), or 49153-60999 if it cannot be read.
  uint16_t ephemeral_first = 0;
  uint16_t ephemeral_last = 0;
};

class PortProxy;
namespace detail {
class ProxyCore;
}

// One forward: listening until destroyed.
class ProxyListener {
 public:
  ~ProxyListener();
  ProxyListener(const ProxyListener&) = delete;
  ProxyListener& operator=(const ProxyListener&) = delete;

  uint16_t port() const { return port_; }
  // Open TCP connections or live UDP flows (tests, diagnostics).
  size_t active() const;

 private:
  friend class PortProxy;
  ProxyListener(std::shared_ptr<detail::ProxyCore> core, uint64_t id, uint16_t port);
  std::shared_ptr<detail::ProxyCore> core_;
  uint64_t id_;
  uint16_t port_;
};

class PortProxy {
 public:
  // Starts the proxy's thread (aborts if the host cannot give it an epoll fd: nothing works then).
  explicit PortProxy(SocketFactory factory, PortProxyOptions options = {});
  // Listeners still alive keep the thread and their forwards until they are destroyed.
  ~PortProxy();
  PortProxy(const PortProxy&) = delete;
  PortProxy& operator=(const PortProxy&) = delete;

  // Binds and listens now. A port in use fails here with dockerd's text (after its "driver failed
  // programming external connectivity on endpoint NAME (ID): "): "Bind for 0.0.0.0:8080 failed: port is
  // already allocated" when one of this proxy's forwards holds the same protocol, address and port, else
  // "Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address already in use" (kIo: HTTP 500 as
  // dockerd). Invalid specs are kInvalidArgument.
  Result<std::unique_ptr<ProxyListener>> listen(const ProxySpec& spec);

 private:
  std::shared_ptr<detail::ProxyCore> core_;
};

}  // namespace kiln::net

// net::DnsServer and net::PortProxy as NetworkManager's DnsService and PortPublisher. Header-only, like
// fabric_adapter.h, so that kiln_daemon links the network services only where kilnd constructs them:
//   networks::DnsAdapter dns(dns_server);  networks::ProxyAdapter ports(port_proxy);
// and NetworkManagerConfig{.fabric = &fabric_adapter, .dns = &dns, .ports = &ports, ...}.
// Needs src/net/dns_server.h and src/net/port_proxy.h (branch h/netproxy). Thread-safe as those are.
#pragma once

#include "daemon/networks/network_services.h"
#include "net/dns_server.h"
#include "net/port_proxy.h"

namespace kiln::daemon::networks {

class DnsAdapter final : public DnsService {
 public:
  explicit DnsAdapter(net::DnsServer& server) : server_(server) {}
  Result<ServiceHandle> serve(UniqueFd udp, UniqueFd tcp_listening, NameLookup lookup) override {
    net::NameLookup names{.forward = std::move(lookup.forward),
                          .reverse = std::move(lookup.reverse),
                          .network_name = std::move(lookup.network_name)};
    std::unique_ptr<net::DnsZone> zone =
        KILN_TRY(server_.serve(std::move(udp), std::move(tcp_listening), names));
    return ServiceHandle(std::move(zone));
  }

 private:
  net::DnsServer& server_;
};

class ProxyAdapter final : public PortPublisher {
 public:
  explicit ProxyAdapter(net::PortProxy& proxy) : proxy_(proxy) {}
  Result<ProxyListener> listen(const ProxySpec& spec) override {
    std::unique_ptr<net::ProxyListener> listener =
        KILN_TRY(proxy_.listen({.protocol = spec.protocol,
                                .host_ip = spec.host_ip,
                                .host_port = spec.host_port,
                                .host_port_last = spec.host_port_last,
                                .target_ip = spec.target_ip,
                                .target_port = spec.target_port}));
    uint16_t port = listener->port();
    return ProxyListener{.handle = ServiceHandle(std::move(listener)), .port = port};
  }

 private:
  net::PortProxy& proxy_;
};

}  // namespace kiln::daemon::networks

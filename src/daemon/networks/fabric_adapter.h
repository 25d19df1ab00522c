// net::Fabric as NetworkManager's NetworkFabric. Header-only so that kiln_daemon does not link the fabric
// until kilnd constructs one: `networks::FabricAdapter adapter(*fabric);` in daemon.cc. Thread-safe as the
// Fabric is.
#pragma once

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "daemon/networks/network_services.h"
#include "net/fabric.h"

namespace kiln::daemon::networks {

class FabricAdapter final : public NetworkFabric {
 public:
  explicit FabricAdapter(net::Fabric& fabric) : fabric_(fabric) {}
  Result<void> ensure_bridge(const std::string& name, const std::string& gateway_cidr,
                             bool internal) override {
    return fabric_.ensure_bridge(name, gateway_cidr, internal);
  }
  Result<void> remove_bridge(const std::string& name) override { return fabric_.remove_bridge(name); }
  Result<UniqueFd> open_tap(const std::string& bridge, std::string* name) override {
    return fabric_.open_tap(bridge, name);
  }
  Result<UniqueFd> open_detached_tap(std::string* name) override { return fabric_.open_detached_tap(name); }
  Result<void> attach_tap(const std::string& tap, const std::string& bridge) override {
    return fabric_.attach_tap(tap, bridge);
  }
  Result<void> detach_tap(const std::string& tap, const std::string& bridge) override {
    return fabric_.detach_tap(tap, bridge);
  }
  Result<UniqueFd> bound_socket(int type, const std::string& ipv4, uint16_t port) override {
    UniqueFd fd = KILN_TRY(fabric_.socket(AF_INET, type | SOCK_CLOEXEC, 0));
    int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    if (::inet_pton(AF_INET, ipv4.c_str(), &address.sin_addr) != 1)
      return Error::invalid_argument(fmt::format("bad IPv4 address {}", ipv4));
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0)
      return Error::last_os_error(fmt::format("bind {}:{}", ipv4, port));
    if (type == SOCK_STREAM && ::listen(fd.get(), SOMAXCONN) != 0)
      return Error::last_os_error(fmt::format("listen {}:{}", ipv4, port));
    return fd;
  }
  Result<std::vector<std::string>> bridges() override {
    std::vector<std::string> names;
    for (const net::LinkInfo& link : KILN_TRY(fabric_.links())) {
      if (link.kind == "bridge") names.push_back(link.name);
    }
    return names;
  }

 private:
  net::Fabric& fabric_;
};

}  // namespace kiln::daemon::networks

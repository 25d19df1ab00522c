#include "net/fabric.h"

#include <sys/socket.h>

#include "net/firewall.h"
#include "net/links.h"
#include "net/namespace_thread.h"
#include "net/outbound_nat.h"

namespace kiln::net {

struct Fabric::Worker {
  std::unique_ptr<NamespaceThread> inside;
};

Fabric::Fabric(Key /*key*/, FabricConfig config)
    : config_(std::move(config)), worker_(std::make_unique<Worker>()) {}
Fabric::~Fabric() = default;

Result<std::unique_ptr<Fabric>> Fabric::open(FabricConfig config) {
  if (config.namespace_path.empty()) return Error::invalid_argument("Fabric needs a namespace path");
  auto fabric = std::make_unique<Fabric>(Key{}, std::move(config));
  fabric->worker_->inside = KILN_TRY_CONTEXT(NamespaceThread::open_or_create(fabric->config_.namespace_path),
                                             "Kiln's network namespace");
  const std::string outbound(kOutboundLink);
  KILN_TRY(fabric->run_inside([&]() -> Result<void> {
    KILN_TRY(links::set_up("lo"));
    if (fabric->config_.outbound) KILN_TRY(firewall::set_up(outbound));
    return ok();
  }));
  if (fabric->config_.outbound) KILN_TRY(ensure_outbound_nat(*fabric->worker_->inside, fabric->config_));
  return fabric;
}

Result<void> Fabric::run_inside(const std::function<Result<void>()>& work) {
  return worker_->inside->run(work);
}

Result<void> Fabric::ensure_bridge(const std::string& name, const std::string& gateway_cidr, bool internal) {
  return run_inside([&]() -> Result<void> {
    KILN_TRY(links::add_bridge(name));
    KILN_TRY(links::set_ipv4(name, gateway_cidr));
    KILN_TRY(links::set_up(name));
    if (!config_.outbound) return ok();
    const std::string outbound(kOutboundLink);
    return internal ? firewall::deny_outbound(name, outbound) : firewall::allow_outbound(name, outbound);
  });
}

Result<void> Fabric::remove_bridge(const std::string& name) {
  return run_inside([&]() -> Result<void> {
    KILN_TRY(links::delete_bridge(name));
    if (config_.outbound) KILN_TRY(firewall::deny_outbound(name, std::string(kOutboundLink)));
    return ok();
  });
}

Result<UniqueFd> Fabric::open_tap(const std::string& bridge, std::string* name) {
  if (bridge.empty()) return Error::invalid_argument("a tap needs a bridge");
  UniqueFd tap;
  KILN_TRY(run_inside([&]() -> Result<void> {
    tap = KILN_TRY(links::open_tap(bridge, name));
    return ok();
  }));
  return tap;
}

Result<UniqueFd> Fabric::open_detached_tap(std::string* name) {
  UniqueFd tap;
  KILN_TRY(run_inside([&]() -> Result<void> {
    tap = KILN_TRY(links::open_tap("", name));
    return ok();
  }));
  return tap;
}

Result<void> Fabric::attach_tap(const std::string& tap, const std::string& bridge) {
  KILN_TRY(links::validate_name(tap));
  KILN_TRY(links::validate_name(bridge));
  return run_inside([&]() { return links::attach_to_bridge(tap, bridge); });
}

Result<void> Fabric::detach_tap(const std::string& tap, const std::string& bridge) {
  KILN_TRY(links::validate_name(tap));
  KILN_TRY(links::validate_name(bridge));
  return run_inside([&]() { return links::detach_from_bridge(tap, bridge); });
}

Result<std::vector<LinkInfo>> Fabric::links() {
  std::vector<LinkInfo> out;
  KILN_TRY(run_inside([&]() -> Result<void> {
    out = KILN_TRY(links::list());
    return ok();
  }));
  return out;
}

Result<UniqueFd> Fabric::socket(int domain, int type, int protocol) {
  UniqueFd fd;
  KILN_TRY(run_inside([&]() -> Result<void> {
    fd = UniqueFd(::socket(domain, type | SOCK_CLOEXEC, protocol));
    if (!fd) return Error::last_os_error("socket in Kiln's network namespace");
    return ok();
  }));
  return fd;
}

}  // namespace kiln::net

// VmManager::set_networking: the networks a VM gets at its next start, and a running VM joining and leaving
// networks at once (docker network connect|disconnect of a running container). QEMU's microvm has no
// hotplug, so a running VM's new network takes one of its spare NIC slots (VmRecord::nic_taps):
// NetworkManager puts that slot's tap on the network's bridge and the agent configures the interface whose
// device address is the slot's (engine::nic_device_mac); leaving takes the interface down and the tap off the
// bridge.
#include <algorithm>

#include "common/log.h"
#include "daemon/vm_manager.h"
#include "daemon/vm_slot.h"
#include "engine/engine.h"

namespace kiln::daemon {
namespace {

bool same_network(const VmNic& nic, const VmNetworkRequest& request) {
  return request.network == nic.network_id || request.network == nic.network_name;
}

// A NIC joining a running VM: no name servers (a running guest's resolver stays the one it started with, as a
// Docker container's resolv.conf does), and the default route only when told.
agent::InterfaceConfig interface_config(const VmNic& nic, bool default_route) {
  agent::InterfaceConfig config = guest_interface(nic);
  config.default_route = default_route && !nic.gateway.empty();
  return config;
}

// The NIC the guest's default route goes through: the first one with a gateway (as at boot).
const VmNic* router(const std::vector<VmNic>& nics) {
  auto it = std::find_if(nics.begin(), nics.end(), [](const VmNic& nic) { return !nic.gateway.empty(); });
  return it == nics.end() ? nullptr : &*it;
}

}  // namespace

Result<VmRecord> VmManager::set_networking(const std::string& id_or_name,
                                           std::vector<VmNetworkRequest> networks,
                                           std::vector<PortPublication> ports, std::string_view as_owner) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "reconnect"));
    if (vm.state == VmState::kRunning && slot.running && slot.running->hub) {
      if (ports != vm.ports) {
        return Error::failed_precondition(
            fmt::format("cannot change the published ports of VM {} while it runs", vm.name));
      }
      return change_live_networks(slot, vm, std::move(networks));
    }
    if (has_monitor(vm.state) || vm.state == VmState::kSuspended) {
      return Error::failed_precondition(
          fmt::format("cannot change the networks of VM {} while it is {}", vm.name, to_string(vm.state)));
    }
    vm.networks = std::move(networks);
    vm.ports = std::move(ports);
    KILN_TRY(store_.update(vm));
    return ok();
  });
}

Result<void> VmManager::change_live_networks(Slot& slot, VmRecord& vm,
                                             std::vector<VmNetworkRequest> networks) {
  if (config_.networking == nullptr)
    return Error::unsupported("networking is not available: kilnd runs without its network namespace");
  agent::AgentHub& hub = *slot.running->hub;
  auto configure = [&](std::vector<agent::InterfaceConfig> interfaces) -> Result<void> {
    agent::NetworkConfigRequest request{.interfaces = std::move(interfaces)};
    return hub.call(
        [&](agent::AgentConnection& connection) { return connection.configure_network(request); });
  };
  bool slots_supported = KILN_TRY(hub.call([](agent::AgentConnection& connection) -> Result<bool> {
    return connection.has_capability("network_slots");
  }));
  if (!slots_supported) {
    return Error::unsupported(fmt::format(
        "VM {}'s guest agent is too old to change networks while it runs (it lacks capability network_slots)",
        vm.name));
  }

  // vm.networks follows each step, so that a failure half-way records what the VM is really on.
  auto changed = apply_live_networks(vm, networks, configure);
  if (changed) vm.networks = std::move(networks);
  KILN_TRY(store_.update(vm));
  publish(vm, "updated");
  return changed;
}

Result<void> VmManager::apply_live_networks(
    VmRecord& vm, const std::vector<VmNetworkRequest>& networks,
    const std::function<Result<void>(std::vector<agent::InterfaceConfig>)>& configure) {
  // Networks left: the interface goes down, then the address and the tap's bridge are given back.
  for (size_t i = 0; i < vm.nics.size();) {
    const VmNic nic = vm.nics[i];
    bool kept = std::any_of(networks.begin(), networks.end(),
                            [&](const VmNetworkRequest& request) { return same_network(nic, request); });
    if (kept) {
      ++i;
      continue;
    }
    std::vector<agent::InterfaceConfig> change{
        {.device_mac = engine::nic_device_mac(nic.slot), .down = true}};
    bool was_router = router(vm.nics) == &vm.nics[i];
    std::vector<VmNic> after = vm.nics;
    after.erase(after.begin() + static_cast<std::ptrdiff_t>(i));
    // The default route went with it: the next NIC with a gateway takes it, as it would have at boot.
    if (const VmNic* next = router(after); was_router && next != nullptr)
      change.push_back(interface_config(*next, true));
    KILN_TRY_CONTEXT(configure(std::move(change)),
                     fmt::format("take the VM's interface on network {} down", nic.network_name));
    KILN_TRY(config_.networking->disconnect(vm, nic));
    vm.nics = std::move(after);
    std::erase_if(vm.networks, [&](const VmNetworkRequest& request) { return same_network(nic, request); });
    KILN_TRY(store_.update(vm));  // each step on record at once: a kilnd killed now adopts what is true
    log::info("VM left a network", {{"vm", vm.name}, {"network", nic.network_name}});
  }

  // Networks joined: a spare slot each.
  for (const VmNetworkRequest& request : networks) {
    if (std::any_of(vm.nics.begin(), vm.nics.end(),
                    [&](const VmNic& nic) { return same_network(nic, request); }))
      continue;
    size_t free_slot = 0;
    while (
        free_slot < vm.nic_taps.size() &&
        std::any_of(vm.nics.begin(), vm.nics.end(), [&](const VmNic& nic) { return nic.slot == free_slot; }))
      ++free_slot;
    if (free_slot >= vm.nic_taps.size()) {
      return Error::failed_precondition(fmt::format(
          "VM {} has no spare NIC for network {} while it runs: it has {} NIC slot(s), all in use (QEMU's "
          "microvm cannot add devices to a running VM); stop it first",
          vm.name, request.network, vm.nic_taps.size()));
    }
    VmNic nic = KILN_TRY(config_.networking->connect(vm, request, free_slot, vm.nic_taps[free_slot]));
    bool routes = router(vm.nics) == nullptr;
    // On record before the guest hears of it: a kilnd killed from here on adopts the address.
    vm.nics.push_back(nic);
    vm.networks.push_back(request);
    auto recorded = store_.update(vm);
    auto configured = recorded ? configure({interface_config(nic, routes)}) : Result<void>(recorded.error());
    if (!configured) {
      if (auto undone = config_.networking->disconnect(vm, nic); !undone)
        log::warn("could not give back a NIC", {{"vm", vm.name}, {"error", undone.error().message()}});
      vm.nics.pop_back();
      vm.networks.pop_back();
      return configured.error().with_context(
          fmt::format("configure the VM's interface on network {}", nic.network_name));
    }
    log::info("VM joined a network", {{"vm", vm.name}, {"network", nic.network_name}, {"ipv4", nic.ipv4}});
  }
  return ok();
}

}  // namespace kiln::daemon

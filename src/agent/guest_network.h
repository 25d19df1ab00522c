// The guest's NICs, configured from the host's CONFIGURE_NETWORK (or CLONE_INIT's "network"): MAC, MTU,
// IPv4 address and default route, with the classic interface ioctls (the guest has no `ip` tool). A VM
// forked from a template wakes with the template's MACs in its devices, so the MAC is always set here.
// Agent thread only; acts on the calling thread's network namespace.
#pragma once

#include <string>
#include <vector>

#include "agent/protocol/messages.h"
#include "common/error.h"

namespace kiln::agent {

// The guest's virtio-net interfaces in order (eth0 before eth1 before eth10), from `sys_class_net`
// (normally /sys/class/net).
std::vector<std::string> virtio_net_interfaces(const std::string& sys_class_net);

// Which interface each config goes to: one already carrying the config's MAC (a cold-booted VM's device
// got it from the host), else the next unclaimed one in order (a clone's devices carry its template's MACs).
// kFailedPrecondition when there are fewer interfaces than configs.
Result<std::vector<std::string>> interfaces_for(const std::vector<InterfaceConfig>& configs,
                                                const std::string& sys_class_net);

// Configures `interface` as `config` says (down, MAC, MTU, address, up) and, when `default_route`, replaces
// the default route with one through config.gateway.
Result<void> configure_interface(const std::string& interface, const InterfaceConfig& config,
                                 bool default_route);

// The whole request against the guest's virtio-net interfaces.
Result<void> apply_network_config(const std::vector<InterfaceConfig>& configs,
                                  const std::string& sys_class_net = "/sys/class/net");

}  // namespace kiln::agent

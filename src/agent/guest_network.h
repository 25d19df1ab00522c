// The guest's NICs, configured from the host's CONFIGURE_NETWORK (or CLONE_INIT's "network"): MAC, MTU,
// IPv4 address and default route, with the classic interface ioctls (the guest has no `ip` tool). A VM
// forked from a template wakes with the template's MACs in its devices, so the MAC is always set here.
// Agent thread only; acts on the calling thread's network namespace.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/protocol/messages.h"
#include "common/error.h"

namespace kiln::agent {

// The guest's virtio-net interfaces in order (eth0 before eth1 before eth10), from `sys_class_net`
// (normally /sys/class/net).
std::vector<std::string> virtio_net_interfaces(const std::string& sys_class_net);

// An interface's device (permanent) address, "" if it cannot be read (SIOCETHTOOL ETHTOOL_GPERMADDR).
std::string device_mac_of(const std::string& interface);

// Which interface each config goes to: the one whose device address (`device_mac`, a function for tests) is
// the config's device_mac, else one already carrying the config's MAC, else the next unclaimed one in order.
// kFailedPrecondition when there are fewer interfaces than configs or a device address is not there.
Result<std::vector<std::string>> interfaces_for(
    const std::vector<InterfaceConfig>& configs, const std::string& sys_class_net,
    const std::function<std::string(const std::string&)>& device_mac);

// Configures `interface` as `config` says (down, MAC, MTU, address, up) and, when `default_route`, replaces
// the default route with one through config.gateway.
Result<void> configure_interface(const std::string& interface, const InterfaceConfig& config,
                                 bool default_route);

// Takes `interface` down and removes its address (the VM left that interface's network).
Result<void> take_down_interface(const std::string& interface);

// The whole request against the guest's virtio-net interfaces: interfaces taken down first, then the others
// configured.
Result<void> apply_network_config(const std::vector<InterfaceConfig>& configs,
                                  const std::string& sys_class_net = "/sys/class/net");

}  // namespace kiln::agent

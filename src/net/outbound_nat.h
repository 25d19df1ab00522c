// Outbound for Kiln's network namespace: slirp4netns, a user-mode NAT. It owns a tap inside the namespace
// (address .100 of its subnet, default route via .2) and turns what the guests send through it into ordinary
// sockets of the host, so guests reach whatever the host reaches without any host route, address or firewall
// rule. Its gateway (.2) forwards to the host's loopback unless that is disabled.
//
// The NAT outlives kilnd (guests keep their connections across a kilnd restart): it is started detached and
// found again by its tap, which exists exactly as long as the NAT process runs.
#pragma once

#include <string>

#include "common/error.h"
#include "net/fabric.h"

namespace kiln::net {

class NamespaceThread;

// The tap slirp4netns makes in the namespace.
inline constexpr std::string_view kOutboundLink = "kslirp0";

// Starts slirp4netns for the namespace unless its tap is already there; waits until it is configured.
Result<void> ensure_outbound_nat(NamespaceThread& inside, const FabricConfig& config);
// The NAT's gateway address (what `host-gateway` names): .2 of the outbound subnet.
Result<std::string> outbound_gateway(const std::string& outbound_cidr);

}  // namespace kiln::net

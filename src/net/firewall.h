// The rules of Kiln's network namespace (iptables, run on the namespace's thread so they land there and
// never in the host's tables): forwarding between bridges is dropped (networks are isolated from each other),
// a bridge that is not internal may forward out through the outbound NAT's tap, and what leaves through it is
// masqueraded to the NAT's own address.
#pragma once

#include <string>

#include "common/error.h"

namespace kiln::net::firewall {

// The namespace-wide rules; idempotent. `outbound_link`: the NAT's tap.
Result<void> set_up(const std::string& outbound_link);
// Lets `bridge` forward out (or stops it: internal networks, removed bridges). Idempotent.
Result<void> allow_outbound(const std::string& bridge, const std::string& outbound_link);
Result<void> deny_outbound(const std::string& bridge, const std::string& outbound_link);

}  // namespace kiln::net::firewall

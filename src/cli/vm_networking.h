// The networking side of `kiln vm`: --network and -p/--publish values turned into the "networks" and
// "ports" of a Kiln VM API create request, and the one-line cause `kiln vm ip` gives for a VM without an
// address. Pure functions of their inputs (no request is made here); any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json.h"

namespace kiln::cli {

// --network NAME[:IPV4] values as the create request's "networks": a name alone stays a string, a name with
// an address becomes {"network", "ipv4"}. A single "none" is the empty array (the VM gets no NIC); "none"
// next to other networks, an empty name or a bad IPv4 address is kInvalidArgument naming the value. Whether
// the networks exist is kilnd's to say.
Result<Json> networks_json(const std::vector<std::string>& specs);

// One -p value, Docker's syntax without ranges: [HOST_IP:][HOST_PORT:]GUEST_PORT[/tcp|udp]. HOST_IP is an
// IPv4 address or a bracketed IPv6 one ("[::1]:8080:80"); an absent or 0 HOST_PORT means any free port.
// Gives {"protocol", "host_port", "guest_port"} plus "host_ip" when one was given; kInvalidArgument in the
// docker CLI's words ("invalid hostPort: x") prefixed by the value.
Result<Json> publication_json(std::string_view spec);

// Why a VM (its GET /v1/vms/{id} JSON) has no IP address: on no network, not running, or running without a
// NIC (kilnd's guest networking is off). One line, naming the VM.
std::string no_address_reason(const Json& vm);

}  // namespace kiln::cli

// NetworkRecord: one Docker network as kiln.db keeps it (the networks table, schema.cc step 4). A "bridge"
// network is a Linux bridge in Kiln's network namespace (net::Fabric) with the gateway's address on it; the
// predefined "none" (driver "null") and "host" (driver "host") have no bridge and no addresses. Plain data;
// any thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/json.h"

namespace kiln::daemon::networks {

// The predefined networks (always present, never removed) and the default network's bridge.
inline constexpr std::string_view kDefaultNetwork = "bridge";
inline constexpr std::string_view kNoneNetwork = "none";
inline constexpr std::string_view kHostNetwork = "host";
inline constexpr std::string_view kDefaultBridge = "kiln0";

// One IPAM.Config entry. `gateway` is always set on a bridge network; `gateway_given` says whether the
// client gave it or the network was made from a default pool (dockerd shows the gateway in IPAM.Config only
// then).
struct IpamConfig {
  std::string subnet;    // "172.18.0.0/16"
  std::string gateway;   // "172.18.0.1"
  std::string ip_range;  // "" or a CIDR inside subnet: where containers' addresses come from
  std::map<std::string, std::string> auxiliary_addresses;  // name -> address, kept out of allocation
  bool gateway_shown = false;
  bool subnet_given = false;  // the client chose the subnet (needed for a container's --ip)
  bool operator==(const IpamConfig&) const = default;
};

struct NetworkRecord {
  std::string id;  // 64 hex digits
  std::string name;
  std::string driver = "bridge";  // "bridge", "null" (none), "host"
  std::string created;            // RFC 3339 with nanoseconds, UTC
  std::vector<IpamConfig> ipam;   // empty for none and host; one entry for a bridge network
  std::map<std::string, std::string> ipam_options;
  bool ipam_options_given = false;  // shown as {} rather than null (the CLI always sends IPAM.Options)
  bool internal = false;
  bool attachable = false;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;
  std::string bridge;  // "kiln0" for the default network, "br-" + 12 of the id for the others, "" otherwise
  bool predefined = false;
};

Json to_storage_json(const NetworkRecord& network);
Result<NetworkRecord> network_from_storage_json(const Json& json);

}  // namespace kiln::daemon::networks

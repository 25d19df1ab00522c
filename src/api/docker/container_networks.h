// A container's networks in the Docker API: what `docker create` asks for (HostConfig.NetworkMode, Dns,
// DnsOptions, DnsSearch, ExtraHosts and NetworkingConfig.EndpointsConfig) checked against kilnd's networks in
// dockerd 20.10's words; `docker network connect|disconnect` on a container's record; the VM networks a
// starting container asks VmManager for; and NetworkSettings as container inspect and ps show it, from the
// record and its VM's NICs. Plain functions; any thread.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "daemon/containers/container_record.h"
#include "daemon/networks/container_networking.h"
#include "daemon/networks/network_manager.h"
#include "daemon/state/vm_record.h"

namespace kiln::api::docker {

using daemon::containers::ContainerRecord;
using daemon::containers::NetworkEndpointConfig;

struct ContainerNetworking {
  std::string network_mode = "default";
  std::vector<NetworkEndpointConfig> networks;  // empty for "none"
  std::vector<std::string> dns;
  std::vector<std::string> dns_options;
  std::vector<std::string> dns_search;
  std::vector<std::string> extra_hosts;
  std::vector<daemon::containers::ContainerLink> links;  // HostConfig.Links, parsed (names not yet resolved)
};

// One EndpointSettings object (create's NetworkingConfig.EndpointsConfig[name], connect's EndpointConfig):
// Aliases, IPAMConfig.IPv4Address, MacAddress, Links (checked as dockerd's ParseLink). kInvalidArgument for
// an IPv6 address or a bad link.
Result<NetworkEndpointConfig> parse_endpoint_settings(const std::string& network, const Json& settings);

// `host_config` and `networking_config` are the request's objects as sent (either may be null or {}).
// kInvalidArgument for "host", "container:..." and bad endpoint settings. A network that does not exist is
// recorded by name (its start fails, as dockerd 20.10's does).
Result<ContainerNetworking> parse_container_networking(const Json& host_config, const Json& networking_config,
                                                       daemon::networks::NetworkManager& networks);

// Lays the parsed settings onto a container being created.
void apply_container_networking(ContainerNetworking networking, daemon::containers::HostConfig& host_config,
                                std::vector<NetworkEndpointConfig>& networks);

// What a starting container's VM asks for, and its --add-host lines: the daemon's (ContainerManager calls
// them at start).
using daemon::networks::extra_hosts_lines;
using daemon::networks::vm_network_requests;

// The message for connect/disconnect of a paused or restarting container (its VM's agent cannot configure a
// NIC then).
std::string networks_fixed_message(const ContainerRecord& container);

// docker network connect: adds `network` (already resolved) to the container's record; a running container's
// VM joins it when the record is saved (ContainerManager::change_networks). kFailedPrecondition while it is
// paused or restarting; kPermissionDenied (dockerd: 403) when a running container is already on it;
// kInvalidArgument in dockerd's words for host/none mixes and bad --ip.
Result<void> connect_container(ContainerRecord& container, const daemon::networks::NetworkRecord& network,
                               NetworkEndpointConfig endpoint);
// docker network disconnect; a running container's VM leaves the network when the record is saved.
// kInvalidArgument (dockerd: 500) "container X is not connected to the network Y".
Result<void> disconnect_container(ContainerRecord& container, const daemon::networks::NetworkRecord& network);

// NetworkSettings of GET /containers/{id}/json. `vm`: the container's VM, whose `nics` hold the addresses
// while it runs (nullptr: none). `ports`: NetworkSettings.Ports as rendered by the port code ({} if none).
Json container_network_settings_json(const ContainerRecord& container, const daemon::VmRecord* vm,
                                     Json ports = Json::object());
// NetworkSettings.Networks alone (GET /containers/json).
Json container_networks_json(const ContainerRecord& container, const daemon::VmRecord* vm);

}  // namespace kiln::api::docker

#include "api/docker/container_networks.h"

#include <fmt/format.h>

#include <algorithm>

#include "api/docker/container_json.h"

namespace kiln::api::docker {
namespace {

using daemon::containers::ContainerState;
using daemon::networks::kDefaultNetwork;
using daemon::networks::kHostNetwork;
using daemon::networks::kNoneNetwork;
using daemon::networks::NetworkRecord;

constexpr size_t kShortId = 12;

bool running(const ContainerRecord& container) {
  return container.state == ContainerState::kRunning || container.state == ContainerState::kPaused ||
         container.state == ContainerState::kRestarting;
}

Result<std::vector<std::string>> string_list(const Json& object, std::string_view field) {
  std::vector<std::string> values;
  const Json* value = object.is_object() ? find_field(object, field) : nullptr;
  if (value == nullptr || value->is_null()) return values;
  if (!value->is_array()) {
    return Error::invalid_argument(
        fmt::format("json: cannot unmarshal {} into Go struct field HostConfig.{} of type []string",
                    json_kind(*value), field));
  }
  for (const Json& item : *value) {
    if (!item.is_string()) {
      return Error::invalid_argument(
          fmt::format("json: cannot unmarshal {} into Go struct field HostConfig.{} of type string",
                      json_kind(item), field));
    }
    values.push_back(item.get<std::string>());
  }
  return values;
}

std::string container_mode_message(const std::string& mode) {
  return fmt::format(
      "network mode \"{}\" is not supported by Kiln: every container is a virtual machine with its own "
      "network "
      "stack, so it cannot join another container's; put both containers on one user-defined network instead "
      "(docker network create NAME, then --network NAME)",
      mode);
}

// dockerd's checks of one endpoint's settings against its network (daemon/container_operations.go).
Result<void> check_endpoint(const NetworkRecord& network, const NetworkEndpointConfig& endpoint) {
  if (network.name == kHostNetwork || network.driver == "host")
    return Error::invalid_argument(daemon::networks::host_network_unsupported_message());
  bool user_defined = !network.predefined;
  if (!endpoint.aliases.empty() && !user_defined)
    return Error::invalid_argument(
        "network-scoped alias is supported only for containers in user defined networks");
  if (!endpoint.ipv4.empty() && network.name == kNoneNetwork)
    return Error::invalid_argument("user specified IP address is supported on user defined networks only");
  return daemon::networks::validate_static_address(network, endpoint.ipv4);
}

std::string short_id(const ContainerRecord& container) {
  return container.id.substr(0, kShortId);
}

// The VM's NIC on `endpoint`'s network while the container runs.
const daemon::VmNic* nic_for(const daemon::VmRecord* vm, const NetworkEndpointConfig& endpoint) {
  if (vm == nullptr || !daemon::has_monitor(vm->state)) return nullptr;
  for (const daemon::VmNic& nic : vm->nics) {
    if ((!endpoint.network_id.empty() && nic.network_id == endpoint.network_id) ||
        nic.network_name == endpoint.network)
      return &nic;
  }
  return nullptr;
}

Json endpoint_json(const ContainerRecord& container, const NetworkEndpointConfig& endpoint,
                   const daemon::VmNic* nic) {
  bool user_defined = endpoint.network != kDefaultNetwork && endpoint.network != kNoneNetwork;
  // dockerd adds the short id to a user-defined network's aliases once the container has joined it.
  Json aliases = nullptr;
  if (user_defined && (!endpoint.aliases.empty() || !container.started_at.empty())) {
    aliases = endpoint.aliases;
    if (!container.started_at.empty() && std::find(endpoint.aliases.begin(), endpoint.aliases.end(),
                                                   short_id(container)) == endpoint.aliases.end())
      aliases.push_back(short_id(container));
  }
  Json ipam = nullptr;
  if (!endpoint.ipv4.empty()) ipam = {{"IPv4Address", endpoint.ipv4}};
  return {{"IPAMConfig", ipam},
          {"Links", endpoint.links.empty() ? Json(nullptr) : Json(endpoint.links)},
          {"Aliases", aliases},
          {"NetworkID",
           nic != nullptr ? nic->network_id : (container.started_at.empty() ? "" : endpoint.network_id)},
          {"EndpointID", nic != nullptr ? nic->endpoint_id : ""},
          {"Gateway", nic != nullptr ? nic->gateway : ""},
          {"IPAddress", nic != nullptr ? nic->ipv4 : ""},
          {"IPPrefixLen", nic != nullptr ? nic->prefix_length : 0},
          {"IPv6Gateway", ""},
          {"GlobalIPv6Address", ""},
          {"GlobalIPv6PrefixLen", 0},
          {"MacAddress", nic != nullptr ? nic->mac : (endpoint.mac.empty() ? "" : endpoint.mac)},
          {"DriverOpts", nullptr}};
}

}  // namespace

Result<NetworkEndpointConfig> parse_endpoint_settings(const std::string& name, const Json& settings) {
  NetworkEndpointConfig endpoint{.network = name};
  if (!settings.is_object()) return endpoint;
  if (const Json* aliases = find_field(settings, "Aliases"); aliases != nullptr && aliases->is_array()) {
    for (const Json& alias : *aliases) {
      if (alias.is_string()) endpoint.aliases.push_back(alias.get<std::string>());
    }
  }
  if (const Json* ipam = find_field(settings, "IPAMConfig"); ipam != nullptr && ipam->is_object()) {
    if (const Json* ipv4 = find_field(*ipam, "IPv4Address"); ipv4 != nullptr && ipv4->is_string())
      endpoint.ipv4 = ipv4->get<std::string>();
    if (const Json* ipv6 = find_field(*ipam, "IPv6Address");
        ipv6 != nullptr && ipv6->is_string() && !ipv6->get<std::string>().empty()) {
      return Error::invalid_argument(
          "IPv6 is not supported by Kiln's networks: containers get IPv4 addresses only (leave out --ip6)");
    }
  }
  if (const Json* mac = find_field(settings, "MacAddress"); mac != nullptr && mac->is_string())
    endpoint.mac = mac->get<std::string>();
  endpoint.links = KILN_TRY(string_list(settings, "Links"));
  for (const std::string& link : endpoint.links) KILN_TRY(daemon::networks::parse_link(link));
  return endpoint;
}

Result<ContainerNetworking> parse_container_networking(const Json& host_config, const Json& networking_config,
                                                       daemon::networks::NetworkManager& networks) {
  ContainerNetworking parsed;
  if (host_config.is_object()) {
    if (const Json* mode = find_field(host_config, "NetworkMode"); mode != nullptr && mode->is_string())
      parsed.network_mode = mode->get<std::string>().empty() ? "default" : mode->get<std::string>();
  }
  parsed.dns = KILN_TRY(string_list(host_config, "Dns"));
  parsed.dns_options = KILN_TRY(string_list(host_config, "DnsOptions"));
  parsed.dns_search = KILN_TRY(string_list(host_config, "DnsSearch"));
  parsed.extra_hosts = KILN_TRY(string_list(host_config, "ExtraHosts"));
  KILN_TRY(extra_hosts_lines(parsed.extra_hosts, "0.0.0.0"));
  for (const std::string& link : KILN_TRY(string_list(host_config, "Links")))
    parsed.links.push_back(KILN_TRY(daemon::networks::parse_link(link)));

  const std::string& mode = parsed.network_mode;
  if (mode == kHostNetwork)
    return Error::invalid_argument(daemon::networks::host_network_unsupported_message());
  if (mode.starts_with("container:")) return Error::invalid_argument(container_mode_message(mode));

  std::vector<NetworkEndpointConfig> endpoints;
  const Json* configs = networking_config.is_object() ? find_field(networking_config, "EndpointsConfig")
                                                      : static_cast<const Json*>(nullptr);
  if (configs != nullptr && configs->is_object() && !configs->empty()) {
    if (configs->size() > 1) {
      std::vector<std::string> names;
      for (const auto& [name, settings] : configs->items()) names.push_back(name);
      return Error::invalid_argument(
          fmt::format("Container cannot be connected to network endpoints: {}", fmt::join(names, ", ")));
    }
    // As dockerd: given endpoints are the container's networks (the CLI names NetworkMode's network there).
    for (const auto& [name, settings] : configs->items())
      endpoints.push_back(KILN_TRY(parse_endpoint_settings(name, settings)));
  } else {
    endpoints.push_back({.network = mode == "default" ? std::string(kDefaultNetwork) : mode});
  }

  for (NetworkEndpointConfig& endpoint : endpoints) {
    // "default" is the default network, as NetworkMode's (the docker CLI 25+ names it in EndpointsConfig).
    if (endpoint.network == "default") endpoint.network = std::string(kDefaultNetwork);
    auto found = networks.get(endpoint.network);
    if (!found && found.error().category() == ErrorCategory::kNotFound) {
      // As dockerd 20.10: recorded by name, and the start fails with "network X not found". (A 404 here
      // would make the docker CLI take it for a missing image and try to pull it.)
      parsed.networks.push_back(endpoint);
      continue;
    }
    NetworkRecord network = KILN_TRY(std::move(found));
    KILN_TRY(check_endpoint(network, endpoint));
    endpoint.network_id = network.id;
    if (network.name == kNoneNetwork) continue;  // no NIC
    parsed.networks.push_back(endpoint);
  }
  return parsed;
}

void apply_container_networking(ContainerNetworking networking, daemon::containers::HostConfig& host_config,
                                std::vector<NetworkEndpointConfig>& networks) {
  host_config.network_mode = std::move(networking.network_mode);
  host_config.dns = std::move(networking.dns);
  host_config.dns_options = std::move(networking.dns_options);
  host_config.dns_search = std::move(networking.dns_search);
  host_config.extra_hosts = std::move(networking.extra_hosts);
  host_config.links = std::move(networking.links);
  networks = std::move(networking.networks);
}

std::string networks_fixed_message(const ContainerRecord& container) {
  return fmt::format(
      "container {} is {}: Kiln changes a container's networks while it runs (its virtual machine's agent "
      "configures the new network card) or while it is stopped; {} it first",
      container.name, to_string(container.state),
      container.state == ContainerState::kPaused ? "unpause" : "wait for it to start or stop");
}

Result<void> connect_container(ContainerRecord& container, const NetworkRecord& network,
                               NetworkEndpointConfig endpoint) {
  if (running(container) && container.state != ContainerState::kRunning)
    return Error::failed_precondition(networks_fixed_message(container));
  const std::string& mode = container.host_config.network_mode;
  if (network.name == kHostNetwork || mode == kHostNetwork)
    return Error::invalid_argument(
        "container cannot be disconnected from host network or connected to host network");
  bool none = mode == kNoneNetwork;
  if (network.name == kNoneNetwork || none) {
    return Error::invalid_argument(
        "container cannot be connected to multiple networks with one of the networks in private (none) mode");
  }
  endpoint.network = network.name;
  endpoint.network_id = network.id;
  KILN_TRY(check_endpoint(network, endpoint));
  for (const NetworkEndpointConfig& joined : container.networks) {
    if (joined.network_id != network.id && joined.network != network.name) continue;
    if (container.state == ContainerState::kRunning) {
      return Error(
          ErrorCategory::kPermissionDenied,
          fmt::format("endpoint with name {} already exists in network {}", container.name, network.name));
    }
    return ok();  // as dockerd for a container that is not running: no change
  }
  container.networks.push_back(std::move(endpoint));
  return ok();
}

Result<void> disconnect_container(ContainerRecord& container, const NetworkRecord& network) {
  if (running(container) && container.state != ContainerState::kRunning)
    return Error::failed_precondition(networks_fixed_message(container));
  if (network.name == kHostNetwork)
    return Error::invalid_argument(
        "container cannot be disconnected from host network or connected to host network");
  auto it =
      std::find_if(container.networks.begin(), container.networks.end(), [&](const NetworkEndpointConfig& e) {
        return e.network_id == network.id || e.network == network.name;
      });
  if (it == container.networks.end()) {
    return Error::invalid_argument(
        fmt::format("container {} is not connected to the network {}", container.id, network.name));
  }
  container.networks.erase(it);
  return ok();
}

Json container_networks_json(const ContainerRecord& container, const daemon::VmRecord* vm) {
  Json networks = Json::object();
  if (container.host_config.network_mode == kNoneNetwork && container.networks.empty()) {
    networks[std::string(kNoneNetwork)] =
        endpoint_json(container, {.network = std::string(kNoneNetwork)}, nullptr);
    return networks;
  }
  for (const NetworkEndpointConfig& endpoint : container.networks)
    networks[endpoint.network] = endpoint_json(container, endpoint, nic_for(vm, endpoint));
  return networks;
}

Json container_network_settings_json(const ContainerRecord& container, const daemon::VmRecord* vm,
                                     Json ports) {
  // The top-level address fields describe the default network only, as in dockerd.
  const daemon::VmNic* bridge = nullptr;
  for (const NetworkEndpointConfig& endpoint : container.networks) {
    if (endpoint.network == kDefaultNetwork) bridge = nic_for(vm, endpoint);
  }
  bool up = vm != nullptr && daemon::has_monitor(vm->state);
  return {{"Bridge", ""},
          {"SandboxID", up ? vm->id : ""},
          {"HairpinMode", false},
          {"LinkLocalIPv6Address", ""},
          {"LinkLocalIPv6PrefixLen", 0},
          {"Ports", std::move(ports)},
          {"SandboxKey", ""},
          {"SecondaryIPAddresses", nullptr},
          {"SecondaryIPv6Addresses", nullptr},
          {"EndpointID", bridge != nullptr ? bridge->endpoint_id : ""},
          {"Gateway", bridge != nullptr ? bridge->gateway : ""},
          {"GlobalIPv6Address", ""},
          {"GlobalIPv6PrefixLen", 0},
          {"IPAddress", bridge != nullptr ? bridge->ipv4 : ""},
          {"IPPrefixLen", bridge != nullptr ? bridge->prefix_length : 0},
          {"IPv6Gateway", ""},
          {"MacAddress", bridge != nullptr ? bridge->mac : ""},
          {"Networks", container_networks_json(container, vm)}};
}

}  // namespace kiln::api::docker

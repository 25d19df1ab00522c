// /networks/...: kilnd's NetworkManager in the Docker Engine API's shapes, for `docker network
// create|ls|inspect|rm|prune|connect|disconnect`. The work is the manager's (src/daemon/networks) and, for a
// container's membership, container_networks.cc's; this file only translates, in dockerd 20.10's words and
// JSON (api/server/router/network, api/types NetworkResource).
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <regex>

#include "api/docker/container_json.h"
#include "api/docker/container_networks.h"
#include "api/docker/docker_routes.h"
#include "api/docker/filters.h"
#include "common/rfc3339.h"

namespace kiln::api::docker {
namespace {

using daemon::networks::CreateNetwork;
using daemon::networks::IpamConfig;
using daemon::networks::NetworkManager;
using daemon::networks::NetworkRecord;
using http::Reply;
using http::Request;

// dockerd decodes the create body into this Go type; its type errors name it.
constexpr std::string_view kCreateBodyType = "NetworkCreateRequest";

Result<NetworkManager*> manager(DockerContext& context) {
  if (context.networks == nullptr) return Error::unsupported("networks are not available in this kilnd");
  return context.networks;
}

std::string id_param(const Request& request) {
  return std::string(request.param("id"));
}

Json ipam_config_json(const IpamConfig& config) {
  Json entry = {{"Subnet", config.subnet}};
  if (!config.ip_range.empty()) entry["IPRange"] = config.ip_range;
  if (config.gateway_shown) entry["Gateway"] = config.gateway;
  if (!config.auxiliary_addresses.empty()) entry["AuxiliaryAddresses"] = config.auxiliary_addresses;
  return entry;
}

Json network_json(const NetworkRecord& network, Json containers) {
  Json configs = Json::array();
  for (const IpamConfig& config : network.ipam) configs.push_back(ipam_config_json(config));
  Json ipam_options = network.ipam_options.empty() && !network.ipam_options_given
                          ? Json(nullptr)
                          : Json(network.ipam_options);
  return {{"Name", network.name},
          {"Id", network.id},
          {"Created", network.created},
          {"Scope", "local"},
          {"Driver", network.driver},
          {"EnableIPv6", false},
          {"IPAM", {{"Driver", "default"}, {"Options", ipam_options}, {"Config", configs}}},
          {"Internal", network.internal},
          {"Attachable", network.attachable},
          {"Ingress", false},
          {"ConfigFrom", {{"Network", ""}}},
          {"ConfigOnly", false},
          {"Containers", std::move(containers)},
          {"Options", network.options},
          {"Labels", network.labels}};
}

// Inspect's Containers: the running VMs on the network, by container id (a plain VM by its own id).
Json containers_json(DockerContext& context, NetworkManager& networks, const NetworkRecord& network) {
  Json containers = Json::object();
  for (const auto& endpoint : networks.endpoints(network.id)) {
    std::string key = endpoint.owner.empty() ? endpoint.vm_id : endpoint.owner;
    std::string name = endpoint.vm_name;
    if (!endpoint.owner.empty()) {
      if (auto container = context.containers.inspect(endpoint.owner)) name = container->name;
    }
    containers[key] = {{"Name", name},
                       {"EndpointID", endpoint.endpoint_id},
                       {"MacAddress", endpoint.mac},
                       {"IPv4Address", fmt::format("{}/{}", endpoint.ipv4, endpoint.prefix_length)},
                       {"IPv6Address", ""}};
  }
  return containers;
}

Result<CreateNetwork> parse_create_network(const Request& request) {
  if (request.body.empty()) return Error::invalid_argument("got EOF while reading request body");
  auto body = parse_json(request.body);
  if (!body) return Error::invalid_argument(fmt::format("invalid JSON: {}", body.error().message()));
  if (!body->is_object()) {
    return Error::invalid_argument(fmt::format("json: cannot unmarshal {} into Go value of type types.{}",
                                               json_kind(*body), kCreateBodyType));
  }
  // One field per statement: an early return out of a half-built aggregate leaks its members (GCC).
  StructReader fields(*body, kCreateBodyType);
  CreateNetwork create;
  create.name = KILN_TRY(fields.string("Name")).value_or("");
  create.driver = KILN_TRY(fields.string("Driver")).value_or("");
  create.internal = KILN_TRY(fields.boolean("Internal")).value_or(false);
  create.attachable = KILN_TRY(fields.boolean("Attachable")).value_or(false);
  create.ingress = KILN_TRY(fields.boolean("Ingress")).value_or(false);
  create.enable_ipv6 = KILN_TRY(fields.boolean("EnableIPv6")).value_or(false);
  create.options = KILN_TRY(fields.string_map("Options")).value_or(std::map<std::string, std::string>{});
  create.labels = KILN_TRY(fields.string_map("Labels")).value_or(std::map<std::string, std::string>{});
  if (KILN_TRY(fields.boolean("ConfigOnly")).value_or(false))
    return Error::invalid_argument("config-only networks are not supported by Kiln");
  if (const Json* from = KILN_TRY(fields.object("ConfigFrom", "network.ConfigReference")); from != nullptr) {
    if (!KILN_TRY(StructReader(*from, "ConfigReference", "ConfigFrom").string("Network"))
             .value_or("")
             .empty())
      return Error::invalid_argument("networks made from a config-only network are not supported by Kiln");
  }
  const Json* ipam = KILN_TRY(fields.object("IPAM", "network.IPAM"));
  if (ipam == nullptr) return create;
  StructReader ipam_fields(*ipam, "IPAM", "IPAM");
  create.ipam_driver = KILN_TRY(ipam_fields.string("Driver")).value_or("");
  auto ipam_options = KILN_TRY(ipam_fields.string_map("Options"));
  create.ipam_options_given = ipam_options.has_value();
  create.ipam_options = ipam_options.value_or(std::map<std::string, std::string>{});
  const Json* configs = ipam_fields.find("Config");
  if (configs == nullptr) return create;
  if (!configs->is_array())
    return unmarshal_error(*configs, ipam_fields.field("Config"), "[]network.IPAMConfig");
  for (const Json& config : *configs) {
    if (!config.is_object())
      return unmarshal_error(config, ipam_fields.field("Config"), "network.IPAMConfig");
    StructReader config_fields(config, "IPAMConfig", "IPAM.Config");
    IpamConfig entry;
    entry.subnet = KILN_TRY(config_fields.string("Subnet")).value_or("");
    entry.gateway = KILN_TRY(config_fields.string("Gateway")).value_or("");
    entry.ip_range = KILN_TRY(config_fields.string("IPRange")).value_or("");
    entry.auxiliary_addresses = KILN_TRY(config_fields.string_map("AuxiliaryAddresses"))
                                    .value_or(std::map<std::string, std::string>{});
    create.ipam.push_back(std::move(entry));
  }
  return create;
}

// ---- filters ----------------------------------------------------------------------------------------------

Result<Reply> list_networks(DockerContext& context, const Request& request) {
  NetworkManager& networks = *KILN_TRY(manager(context));
  Filters filters =
      KILN_TRY(Filters::parse(request.query, {"dangling", "driver", "id", "label", "name", "scope", "type"}));
  for (const std::string& type : filters.get("type")) {
    if (type != "custom" && type != "builtin")
      return Error::invalid_argument(fmt::format("invalid filter: 'type'='{}'", type));
  }
  auto dangling = KILN_TRY(filters.boolean("dangling"));
  Json list = Json::array();
  for (const NetworkRecord& network : KILN_TRY(networks.list())) {
    if (!regex_matches(filters.get("name"), network.name) || !regex_matches(filters.get("id"), network.id) ||
        !exact_match(filters.get("driver"), network.driver) || !exact_match(filters.get("scope"), "local") ||
        !labels_match_all(filters.get("label"), network.labels) ||
        !exact_match(filters.get("type"), network.predefined ? "builtin" : "custom")) {
      continue;
    }
    if (dangling) {
      bool unused = !network.predefined && networks.endpoints(network.id).empty();
      if (unused != *dangling) continue;
    }
    list.push_back(network_json(network, Json::object()));
  }
  return Reply(http::json_response(200, list));
}

Result<Reply> inspect_network(DockerContext& context, const Request& request) {
  NetworkManager& networks = *KILN_TRY(manager(context));
  std::string reference = id_param(request);
  // Networks here are all local: asking for another scope finds none (as dockerd without swarm).
  if (auto scope = request.query.get("scope"); scope && !scope->empty() && *scope != "local")
    return Error::not_found(fmt::format("network {} not found", reference));
  NetworkRecord network = KILN_TRY(networks.get(reference));
  return Reply(http::json_response(200, network_json(network, containers_json(context, networks, network))));
}

Result<Reply> create_network(DockerContext& context, const Request& request) {
  NetworkManager& networks = *KILN_TRY(manager(context));
  NetworkRecord created = KILN_TRY(networks.create(KILN_TRY(parse_create_network(request))));
  return Reply(http::json_response(201, {{"Id", created.id}, {"Warning", ""}}));
}

Result<Json> body_object(const Request& request, std::string_view go_type) {
  if (request.body.empty()) return Error::invalid_argument("got EOF while reading request body");
  auto body = parse_json(request.body);
  if (!body) return Error::invalid_argument(fmt::format("invalid JSON: {}", body.error().message()));
  if (!body->is_object()) {
    return Error::invalid_argument(
        fmt::format("json: cannot unmarshal {} into Go value of type types.{}", json_kind(*body), go_type));
  }
  return *std::move(body);
}

Result<Reply> connect_network(DockerContext& context, const Request& request) {
  NetworkManager& networks = *KILN_TRY(manager(context));
  Json body = KILN_TRY(body_object(request, "NetworkConnect"));
  std::string container = KILN_TRY(StructReader(body, "NetworkConnect").string("Container")).value_or("");
  NetworkRecord network = KILN_TRY(networks.get(id_param(request)));
  const Json* settings = find_field(body, "EndpointConfig");
  NetworkEndpointConfig endpoint =
      KILN_TRY(parse_endpoint_settings(network.name, settings != nullptr ? *settings : Json(nullptr)));
  KILN_TRY(context.containers.change_networks(
      container, [&](ContainerRecord& record) { return connect_container(record, network, endpoint); }));
  return Reply(http::empty_response(200));
}

Result<Reply> disconnect_network(DockerContext& context, const Request& request) {
  NetworkManager& networks = *KILN_TRY(manager(context));
  Json body = KILN_TRY(body_object(request, "NetworkDisconnect"));
  StructReader fields(body, "NetworkDisconnect");
  std::string container = KILN_TRY(fields.string("Container")).value_or("");
  bool force = KILN_TRY(fields.boolean("Force")).value_or(false);
  NetworkRecord network = KILN_TRY(networks.get(id_param(request)));
  auto changed = context.containers.change_networks(
      container, [&](ContainerRecord& record) { return disconnect_container(record, network); });
  if (!changed) {
    // dockerd's forced disconnect of a container it does not know looks for a stale endpoint by that name.
    if (force && changed.error().category() == ErrorCategory::kNotFound)
      return Error::not_found(fmt::format("endpoint {} not found", container));
    return changed.error();
  }
  return Reply(http::empty_response(200));
}

// dockerd's prune `until`: a Go duration before now ("24h", "90m"), unix seconds, or an RFC 3339 time.
Result<std::time_t> parse_until(const std::string& value) {
  if (auto time = parse_rfc3339(value)) return *time;
  int64_t number = 0;
  auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (error == std::errc() && end == value.data() + value.size()) return static_cast<std::time_t>(number);
  if (error == std::errc() && end == value.data() + value.size() - 1) {
    int64_t unit = *end == 'h' ? 3600 : *end == 'm' ? 60 : *end == 's' ? 1 : 0;
    if (unit != 0) return std::time(nullptr) - number * unit;
  }
  return Error::invalid_argument(fmt::format("failed to parse value as time or duration: \"{}\"", value));
}

Result<Reply> prune_networks(DockerContext& context, const Request& request) {
  NetworkManager& networks = *KILN_TRY(manager(context));
  Filters filters = KILN_TRY(Filters::parse(request.query, {"until", "label", "label!"}));
  std::optional<std::time_t> until;
  for (const std::string& value : filters.get("until")) until = KILN_TRY(parse_until(value));
  std::vector<std::string> with = filters.get("label");
  std::vector<std::string> without = filters.get("label!");
  auto removed = KILN_TRY(networks.prune([&](const NetworkRecord& network) {
    if (until) {
      auto created = parse_rfc3339(network.created);
      if (!created || *created >= *until) return false;
    }
    if (!labels_match_all(with, network.labels)) return false;
    return without.empty() || !labels_match_all(without, network.labels);
  }));
  Json deleted = removed.empty() ? Json(nullptr) : Json(removed);
  return Reply(http::json_response(200, {{"NetworksDeleted", deleted}}));
}

}  // namespace

void add_network_routes(DockerRoutes& routes, DockerContext& context) {
  routes.add("GET", "/networks",
             [&context](Request& request) -> Result<Reply> { return list_networks(context, request); });
  routes.add("POST", "/networks/create",
             [&context](Request& request) -> Result<Reply> { return create_network(context, request); });
  routes.add("POST", "/networks/prune",
             [&context](Request& request) -> Result<Reply> { return prune_networks(context, request); });
  routes.add("GET", "/networks/{id}",
             [&context](Request& request) -> Result<Reply> { return inspect_network(context, request); });
  routes.add("DELETE", "/networks/{id}", [&context](Request& request) -> Result<Reply> {
    NetworkManager& networks = *KILN_TRY(manager(context));
    KILN_TRY(networks.remove(id_param(request)));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/networks/{id}/connect",
             [&context](Request& request) -> Result<Reply> { return connect_network(context, request); });
  routes.add("POST", "/networks/{id}/disconnect",
             [&context](Request& request) -> Result<Reply> { return disconnect_network(context, request); });
}

}  // namespace kiln::api::docker

#include "api/docker/container_ports.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include "api/docker/container_json.h"

namespace kiln::api::docker {

namespace {

// Go's strconv.ParseUint(text, 10, 16): digits only, no sign, no spaces, at most 65535.
std::optional<uint16_t> parse_uint16(std::string_view text) {
  if (text.empty()) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// nat.SplitProtoPort: "80/udp" -> {"udp", "80"}, "80" -> {"tcp", "80"}, "" -> {"", ""}.
std::pair<std::string, std::string> split_proto_port(std::string_view raw) {
  if (raw.empty()) return {"", ""};
  size_t slash = raw.find('/');
  if (slash == std::string_view::npos) return {"tcp", std::string(raw)};
  std::string_view port = raw.substr(0, slash);
  if (port.empty()) return {"", ""};
  std::string_view rest = raw.substr(slash + 1);
  std::string_view proto = rest.substr(0, rest.find('/'));  // Go's Split keeps only parts[1]
  if (proto.empty()) return {"tcp", std::string(port)};
  return {std::string(proto), std::string(port)};
}

// nat.ParsePortRange: "8000" or "8000-8010" (only the first two parts of a longer split count, as Go's).
std::optional<std::pair<uint16_t, uint16_t>> parse_port_range(std::string_view text) {
  if (text.empty()) return std::nullopt;
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    auto port = parse_uint16(text);
    if (!port) return std::nullopt;
    return std::pair{*port, *port};
  }
  std::string_view rest = text.substr(dash + 1);
  auto start = parse_uint16(text.substr(0, dash));
  auto end = parse_uint16(rest.substr(0, rest.find('-')));
  if (!start || !end || *end < *start) return std::nullopt;
  return std::pair{*start, *end};
}

// Go's %q for the texts that appear here.
std::string go_quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

Error invalid_spec(std::string_view text) {
  return Error::invalid_argument("invalid port specification: " + go_quote(text));
}

Error type_error(const Json& value, std::string_view field, std::string_view type) {
  return Error::invalid_argument(fmt::format("json: cannot unmarshal {} into Go struct field {} of type {}",
                                             json_kind(value), field, type));
}

// The canonical form of a key the way dockerd reads nat.Port: a port it cannot read is 0.
ContainerPort container_port_of(std::string_view key) {
  auto [proto, port] = split_proto_port(key);
  return ContainerPort{parse_uint16(port).value_or(0), proto};
}

bool valid_ip(const std::string& text) {
  unsigned char buffer[16];
  return ::inet_pton(AF_INET, text.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

struct RawBinding {
  std::string host_ip;
  std::string host_port;
};

}  // namespace

Result<ContainerPorts> parse_container_ports(const Json& raw_config, const Json& raw_host_config) {
  // Go decodes the body before dockerd checks anything: type errors first.
  std::map<std::string, std::vector<RawBinding>> bindings;
  if (const Json* map = find_field(raw_host_config, "PortBindings")) {
    if (!map->is_object()) return type_error(*map, "HostConfig.HostConfig.PortBindings", "nat.PortMap");
    for (const auto& [key, list] : map->items()) {
      auto& entries = bindings[key];
      if (list.is_null()) continue;
      if (!list.is_array())
        return type_error(list, "HostConfig.HostConfig.PortBindings", "[]nat.PortBinding");
      for (const Json& entry : list) {
        if (entry.is_null()) {
          entries.push_back({});
          continue;
        }
        if (!entry.is_object())
          return type_error(entry, "HostConfig.HostConfig.PortBindings", "nat.PortBinding");
        RawBinding binding;
        for (auto [name, into] :
             {std::pair{"HostIp", &binding.host_ip}, std::pair{"HostPort", &binding.host_port}}) {
          const Json* value = find_field(entry, name);
          if (!value) continue;
          if (!value->is_string())
            return type_error(*value, fmt::format("PortBinding.HostConfig.PortBindings.{}", name), "string");
          *into = value->get<std::string>();
        }
        entries.push_back(std::move(binding));
      }
    }
  }
  std::vector<std::string> exposed_keys;
  if (const Json* set = find_field(raw_config, "ExposedPorts")) {
    if (!set->is_object()) return type_error(*set, "ContainerConfigWrapper.ExposedPorts", "nat.PortSet");
    for (const auto& [key, value] : set->items()) {
      if (!value.is_null() && !value.is_object())
        return type_error(value, "ContainerConfigWrapper.ExposedPorts", "struct {}");
      exposed_keys.push_back(key);
    }
  }
  bool publish_all = false;
  if (const Json* flag = find_field(raw_host_config, "PublishAllPorts")) {
    if (!flag->is_boolean()) return type_error(*flag, "HostConfig.HostConfig.PublishAllPorts", "bool");
    publish_all = flag->get<bool>();
  }

  // dockerd's create-time checks (daemon/container.go): a key is one port, a HostPort a port or a range.
  for (const auto& [key, entries] : bindings) {
    std::string port = split_proto_port(key).second;
    if (!port.empty() && !parse_uint16(port)) return invalid_spec(port);
    for (const auto& entry : entries) {
      std::string host_port = split_proto_port(entry.host_port).second;
      if (!host_port.empty() && !parse_port_range(host_port)) return invalid_spec(entry.host_port);
    }
  }

  // At start dockerd publishes the exposed ports only, each with the bindings under the same key.
  ContainerPorts ports;
  std::sort(exposed_keys.begin(), exposed_keys.end());
  for (const auto& key : exposed_keys) {
    ContainerPort exposed = container_port_of(key);
    ports.exposed.push_back(exposed);
    std::vector<RawBinding> entries;
    if (auto it = bindings.find(key); it != bindings.end()) entries = it->second;
    if (entries.empty() && publish_all) entries.push_back({});
    if (entries.empty()) continue;
    if (exposed.protocol == "sctp")
      return Error::invalid_argument(fmt::format(
          "cannot publish {}: Kiln does not support SCTP (only tcp and udp ports)", exposed.key()));
    if (exposed.protocol != "tcp" && exposed.protocol != "udp")
      return Error::invalid_argument(fmt::format("invalid transport protocol: {}", exposed.protocol));
    for (const auto& entry : entries) {
      PortBinding binding{.container = exposed};
      // dockerd reads HostIp with net.ParseIP: what it cannot read means every address.
      if (valid_ip(entry.host_ip)) binding.host_ip = entry.host_ip;
      std::string host_port = split_proto_port(entry.host_port).second;
      if (!host_port.empty()) {
        auto [first, last] = *parse_port_range(host_port);
        if (first != 0 || last != 0) {
          binding.host_port_first = first;
          binding.host_port_last = last;
        }
      }
      ports.bindings.push_back(std::move(binding));
    }
  }
  return ports;
}

std::vector<daemon::PortPublication> port_publications(const ContainerPorts& ports) {
  std::vector<daemon::PortPublication> out;
  for (const auto& binding : ports.bindings) {
    out.push_back(daemon::PortPublication{.protocol = binding.container.protocol,
                                          .host_ip = binding.host_ip,
                                          .host_port = binding.host_port_first,
                                          .guest_port = binding.container.port,
                                          .host_port_last = binding.host_port_last > binding.host_port_first
                                                                ? binding.host_port_last
                                                                : uint16_t{0}});
  }
  return out;
}

namespace {

std::string shown_ip(const std::string& host_ip) {
  return host_ip.empty() ? "0.0.0.0" : host_ip;
}

// Exposed ports plus any published one that is not exposed, in key order.
std::vector<ContainerPort> all_ports(const std::vector<ContainerPort>& exposed,
                                     const std::vector<daemon::PortPublication>& published) {
  std::vector<ContainerPort> out = exposed;
  for (const auto& publication : published) {
    ContainerPort port{publication.guest_port, publication.protocol};
    if (std::find(out.begin(), out.end(), port) == out.end()) out.push_back(port);
  }
  std::sort(out.begin(), out.end(),
            [](const ContainerPort& a, const ContainerPort& b) { return a.key() < b.key(); });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

Json network_settings_ports(const std::vector<ContainerPort>& exposed,
                            const std::vector<daemon::PortPublication>& published, bool running) {
  Json out = Json::object();
  if (!running) return out;
  for (const auto& port : all_ports(exposed, published)) {
    Json bindings = nullptr;
    for (const auto& publication : published) {
      if (publication.guest_port != port.port || publication.protocol != port.protocol) continue;
      if (bindings.is_null()) bindings = Json::array();
      bindings.push_back(
          {{"HostIp", shown_ip(publication.host_ip)}, {"HostPort", std::to_string(publication.host_port)}});
    }
    out[port.key()] = std::move(bindings);
  }
  return out;
}

Json ps_ports(const std::vector<ContainerPort>& exposed,
              const std::vector<daemon::PortPublication>& published, bool running) {
  Json out = Json::array();
  if (!running) return out;
  for (const auto& port : all_ports(exposed, published)) {
    bool any = false;
    for (const auto& publication : published) {
      if (publication.guest_port != port.port || publication.protocol != port.protocol) continue;
      any = true;
      out.push_back({{"IP", shown_ip(publication.host_ip)},
                     {"PrivatePort", port.port},
                     {"PublicPort", publication.host_port},
                     {"Type", port.protocol}});
    }
    if (!any) out.push_back({{"PrivatePort", port.port}, {"Type", port.protocol}});
  }
  return out;
}

Result<std::vector<PortMapping>> parse_port_spec(std::string_view spec) {
  // nat.splitParts: the container port is after the last ':', the host port before it, the IP the rest.
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t colon = spec.find(':', start);
    parts.push_back(
        spec.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  size_t n = parts.size();
  std::string container_part(parts[n - 1]);
  std::string host_port = n >= 2 ? std::string(parts[n - 2]) : "";
  std::string ip;
  if (n >= 3) {
    size_t ip_end = static_cast<size_t>(parts[n - 2].data() - spec.data()) - 1;
    ip = std::string(spec.substr(0, ip_end));
  }
  auto [proto, container_port] = split_proto_port(container_part);
  if (!ip.empty() && ip.front() == '[') {
    if (ip.back() != ']' || ip.find(']') != ip.size() - 1)
      return Error::invalid_argument(
          fmt::format("invalid IP address {}: address {}:: missing ']' in address", ip, ip));
    ip = ip.substr(1, ip.size() - 2);
  }
  if (!ip.empty() && !valid_ip(ip)) return Error::invalid_argument(fmt::format("invalid IP address: {}", ip));
  if (container_port.empty())
    return Error::invalid_argument(fmt::format("no port specified: {}<empty>", spec));
  auto container_range = parse_port_range(container_port);
  if (!container_range)
    return Error::invalid_argument(fmt::format("invalid containerPort: {}", container_port));
  auto [start, end] = *container_range;
  uint16_t host_start = 0, host_end = 0;
  if (!host_port.empty()) {
    auto host_range = parse_port_range(host_port);
    if (!host_range) return Error::invalid_argument(fmt::format("invalid hostPort: {}", host_port));
    std::tie(host_start, host_end) = *host_range;
    // A host range for one container port is where a free port is picked; otherwise the sizes must agree.
    if (end - start != host_end - host_start && end != start)
      return Error::invalid_argument(fmt::format(
          "invalid ranges specified for container and host Ports: {} and {}", container_port, host_port));
  }
  std::string lower = proto;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower != "tcp" && lower != "udp" && lower != "sctp")
    return Error::invalid_argument(fmt::format("invalid proto: {}", proto));
  std::vector<PortMapping> out;
  for (unsigned i = 0; i <= unsigned{end} - start; ++i) {
    PortMapping mapping{.port = fmt::format("{}/{}", start + i, lower), .host_ip = ip};
    if (!host_port.empty()) {
      mapping.host_port = std::to_string(host_start + i);
      if (start == end && host_start != host_end) mapping.host_port += "-" + std::to_string(host_end);
    }
    out.push_back(std::move(mapping));
  }
  return out;
}

}  // namespace kiln::api::docker

#include "daemon/networks/container_networking.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "daemon/networks/ipv4.h"
#include "daemon/networks/network_record.h"

namespace kiln::daemon::networks {
namespace {

constexpr size_t kShortId = 12;

void add_unique(std::vector<std::string>& list, const std::string& value) {
  if (std::find(list.begin(), list.end(), value) == list.end()) list.push_back(value);
}

}  // namespace

std::vector<VmNetworkRequest> vm_network_requests(const containers::ContainerRecord& container) {
  std::vector<VmNetworkRequest> requests;
  for (const containers::NetworkEndpointConfig& endpoint : container.networks) {
    VmNetworkRequest request{.network = endpoint.network_id.empty() ? endpoint.network : endpoint.network_id,
                             .ipv4 = endpoint.ipv4,
                             .aliases = {},
                             .mac = endpoint.mac};
    if (endpoint.network != kDefaultNetwork) {
      add_unique(request.aliases, container.name);
      add_unique(request.aliases, container.id.substr(0, kShortId));
      for (const std::string& alias : endpoint.aliases) add_unique(request.aliases, alias);
    }
    requests.push_back(std::move(request));
  }
  return requests;
}

Result<std::vector<std::string>> extra_hosts_lines(const std::vector<std::string>& extra_hosts,
                                                   const std::string& host_gateway_ip) {
  std::vector<std::string> lines;
  for (const std::string& entry : extra_hosts) {
    // NAME:IP, where an IPv6 address has colons of its own: the name ends at the first one.
    size_t colon = entry.find(':');
    std::string name = colon == std::string::npos ? entry : entry.substr(0, colon);
    std::string address = colon == std::string::npos ? "" : entry.substr(colon + 1);
    if (address == "host-gateway") {
      address = host_gateway_ip;
    } else if (!parse_ipv4(address) && !looks_like_ipv6(address)) {
      return Error::invalid_argument(fmt::format("invalid IP address in add-host: \"{}\"", address));
    }
    if (name.empty()) return Error::invalid_argument(fmt::format("bad format for add-host: \"{}\"", entry));
    lines.push_back(fmt::format("{}\t{}", address, name));
  }
  return lines;
}

std::string container_hosts_file(const containers::ContainerRecord& container, const std::vector<VmNic>& nics,
                                 const std::string& host_gateway_ip,
                                 const std::vector<std::string>& link_lines) {
  std::string hosts =
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n"
      "fe00::0\tip6-localnet\n"
      "ff00::0\tip6-mcastprefix\n"
      "ff02::1\tip6-allnodes\n"
      "ff02::2\tip6-allrouters\n";
  // Checked at create: an entry that no longer parses is left out rather than failing the start.
  for (const std::string& line : extra_hosts_lines(container.host_config.extra_hosts, host_gateway_ip)
                                     .value_or(std::vector<std::string>()))
    hosts += line + "\n";
  for (const std::string& line : link_lines) hosts += line + "\n";
  if (!nics.empty()) {
    const std::string& hostname = container.config.hostname;
    const std::string& domain = container.config.domainname;
    std::string names = domain.empty() ? hostname : fmt::format("{}.{} {}", hostname, domain, hostname);
    hosts += fmt::format("{}\t{}\n", nics.front().ipv4, names);
  }
  return hosts;
}

std::string container_resolv_conf(const containers::ContainerRecord& container,
                                  const std::vector<VmNic>& nics) {
  const containers::HostConfig& host = container.host_config;
  std::vector<std::string> servers;
  bool default_network = !nics.empty() && nics.front().network_name == kDefaultNetwork;
  if (!nics.empty() && !(default_network && !host.dns.empty())) {
    for (const std::string& server : nics.front().dns) add_unique(servers, server);
  }
  for (const std::string& server : host.dns) add_unique(servers, server);
  std::string text;
  if (!host.dns_search.empty()) text += fmt::format("search {}\n", fmt::join(host.dns_search, " "));
  for (const std::string& server : servers) text += fmt::format("nameserver {}\n", server);
  std::vector<std::string> options = host.dns_options;
  bool ndots_given = std::any_of(options.begin(), options.end(),
                                 [](const std::string& option) { return option.starts_with("ndots:"); });
  if (!nics.empty() && !default_network && !ndots_given) options.push_back("ndots:0");
  if (!options.empty()) text += fmt::format("options {}\n", fmt::join(options, " "));
  return text;
}

// ---- legacy links -----------------------------------------------------------------------------------------

Result<containers::ContainerLink> parse_link(std::string_view spec) {
  if (spec.empty()) return Error::invalid_argument("empty string specified for links");
  size_t colon = spec.find(':');
  if (colon != std::string_view::npos && spec.find(':', colon + 1) != std::string_view::npos)
    return Error::invalid_argument(fmt::format("bad format for links: {}", spec));
  if (colon == std::string_view::npos)
    return containers::ContainerLink{.container = std::string(spec), .alias = std::string(spec)};
  std::string_view name = spec.substr(0, colon);
  std::string_view alias = spec.substr(colon + 1);
  if (name.starts_with('/')) {  // inspect's "/name:/parent/alias"
    name.remove_prefix(1);
    if (size_t slash = alias.rfind('/'); slash != std::string_view::npos) alias.remove_prefix(slash + 1);
  }
  return containers::ContainerLink{.container = std::string(name), .alias = std::string(alias)};
}

std::vector<std::string> link_environment(const std::string& parent_name, const std::string& alias,
                                          const LinkedContainer& child) {
  std::string prefix = alias;
  for (char& c : prefix) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  struct Port {
    unsigned number;
    std::string protocol;
  };
  std::vector<Port> ports;
  for (const std::string& port : child.ports) {
    size_t slash = port.find('/');
    unsigned number = 0;
    auto text = std::string_view(port).substr(0, slash);
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (error != std::errc() || number == 0 || number > 65535) continue;
    ports.push_back({number, slash == std::string::npos ? "tcp" : port.substr(slash + 1)});
  }
  // nat.Sort as getDefaultPort sorts: by number, tcp first.
  std::sort(ports.begin(), ports.end(), [](const Port& a, const Port& b) {
    return a.number != b.number ? a.number < b.number : (a.protocol == "tcp" && b.protocol != "tcp");
  });
  std::vector<std::string> env;
  if (!ports.empty()) {
    env.push_back(
        fmt::format("{}_PORT={}://{}:{}", prefix, ports.front().protocol, child.ipv4, ports.front().number));
  }
  for (const Port& port : ports) {
    std::string upper = port.protocol;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string key = fmt::format("{}_PORT_{}_{}", prefix, port.number, upper);
    env.push_back(fmt::format("{}={}://{}:{}", key, port.protocol, child.ipv4, port.number));
    env.push_back(fmt::format("{}_ADDR={}", key, child.ipv4));
    env.push_back(fmt::format("{}_PORT={}", key, port.number));
    env.push_back(fmt::format("{}_PROTO={}", key, port.protocol));
  }
  env.push_back(fmt::format("{}_NAME=/{}/{}", prefix, parent_name, alias));
  for (const std::string& variable : child.env) {
    size_t equals = variable.find('=');
    if (equals == std::string::npos) continue;
    std::string_view key = std::string_view(variable).substr(0, equals);
    // Variables a build adds and that mean nothing to the linking container.
    if (key == "HOME" || key == "PATH") continue;
    env.push_back(fmt::format("{}_ENV_{}", prefix, variable));
  }
  return env;
}

std::string link_hosts_line(const std::string& alias, const LinkedContainer& child) {
  return alias == child.name ? fmt::format("{}\t{}", child.ipv4, alias)
                             : fmt::format("{}\t{} {}", child.ipv4, alias, child.name);
}

}  // namespace kiln::daemon::networks

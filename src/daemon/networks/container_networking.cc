#include "daemon/networks/container_networking.h"

#include <fmt/format.h>

#include <algorithm>

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
                                 const std::string& host_gateway_ip) {
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

}  // namespace kiln::daemon::networks

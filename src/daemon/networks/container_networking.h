// What a starting container's VM needs from its networks, computed from the container's record (the Docker
// API layer fills the record: api/docker/container_networks.h): the VM's network requests with the names
// Docker's DNS resolves, and the container's /etc/hosts and /etc/resolv.conf as dockerd writes them, from the
// NICs its VM got. Plain functions; any thread. ContainerManager calls them when it starts a container.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "daemon/containers/container_record.h"
#include "daemon/state/vm_record.h"

namespace kiln::daemon::networks {

// One request per network of the container, in order (eth0 first). On user-defined networks the container
// answers to its name, its short id and its aliases, as with Docker's embedded DNS; the default network
// resolves no names. An endpoint whose network was not found at create names it as given, so the start
// fails with "network X not found", as dockerd's does.
std::vector<VmNetworkRequest> vm_network_requests(const containers::ContainerRecord& container);

// --add-host entries as /etc/hosts lines ("IP\tNAME"), "host-gateway" replaced by `host_gateway_ip` (where a
// guest reaches the host: the outbound NAT's gateway). kInvalidArgument in dockerd's words for an entry that
// is not NAME:IP.
Result<std::vector<std::string>> extra_hosts_lines(const std::vector<std::string>& extra_hosts,
                                                   const std::string& host_gateway_ip);

// /etc/hosts as dockerd writes it: localhost and the IPv6 names, the --add-host lines, the legacy links'
// lines (LinkedContainer::hosts_line), then the container's first address with its hostname (and
// hostname.domainname).
std::string container_hosts_file(const containers::ContainerRecord& container, const std::vector<VmNic>& nics,
                                 const std::string& host_gateway_ip,
                                 const std::vector<std::string>& link_lines = {});

// ---- legacy links (docker run --link NAME[:ALIAS], default network only) ----

// dockerd's opts.ParseLink: "name:alias", "name" (alias = name), or inspect's "/name:/parent/alias".
// kInvalidArgument "bad format for links: X".
Result<containers::ContainerLink> parse_link(std::string_view spec);

// A running linked container as its linking container's start sees it.
struct LinkedContainer {
  std::string name;                // without "/"
  std::string ipv4;                // its address on the default network
  std::vector<std::string> env;    // its Config.Env
  std::vector<std::string> ports;  // its exposed ports, "80/tcp"
};

// The variables a link gives: ALIAS_PORT (the lowest exposed port), ALIAS_PORT_80_TCP with _ADDR, _PORT and
// _PROTO for each exposed port, ALIAS_NAME=/PARENT/ALIAS and ALIAS_ENV_X for the linked container's
// variables but HOME and PATH (moby's links.Link.ToEnv; ALIAS upper-cased, '-' as '_').
std::vector<std::string> link_environment(const std::string& parent_name, const std::string& alias,
                                          const LinkedContainer& child);
// "IP	ALIAS NAME" (just ALIAS when it is the name).
std::string link_hosts_line(const std::string& alias, const LinkedContainer& child);

// /etc/resolv.conf: the first network's DNS server (its gateway, which answers the network's names and
// forwards the rest to the host's resolvers), then any --dns servers as fallbacks; --dns-search and
// --dns-option as given (ndots:0 on user-defined networks unless given, as dockerd writes it). On the default
// network with --dns, only those servers, as dockerd.
std::string container_resolv_conf(const containers::ContainerRecord& container,
                                  const std::vector<VmNic>& nics);

}  // namespace kiln::daemon::networks

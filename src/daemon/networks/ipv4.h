// IPv4 addresses and subnets for kilnd's networks: parsing in Go's net.ParseCIDR terms (what dockerd's
// messages quote), overlap, and the pools dockerd 20.10 hands out when a network is created without a subnet.
// Plain values; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace kiln::daemon::networks {

// Host byte order: 172.17.0.1 is 0xAC110001.
using Ipv4 = uint32_t;

std::optional<Ipv4> parse_ipv4(std::string_view text);
std::string format_ipv4(Ipv4 address);
// True for anything with a ':' (an IPv6 address or subnet), which Kiln's networks refuse.
bool looks_like_ipv6(std::string_view text);

struct Subnet {
  Ipv4 base = 0;  // the network address (host bits clear)
  int prefix = 0;

  Ipv4 mask() const { return prefix == 0 ? 0 : ~Ipv4{0} << (32 - prefix); }
  Ipv4 last() const { return base | ~mask(); }  // the broadcast address
  bool contains(Ipv4 address) const { return (address & mask()) == base; }
  bool overlaps(const Subnet& other) const { return contains(other.base) || other.contains(base); }
  bool contains(const Subnet& inner) const { return inner.prefix >= prefix && contains(inner.base); }
  std::string to_string() const;  // "172.18.0.0/16"
  bool operator==(const Subnet&) const = default;
};

// "10.1.0.0/24". `host_bits_set` reports an address with host bits ("10.1.0.5/24" parses as 10.1.0.0/24,
// as Go's ParseCIDR, but dockerd then refuses it as overlapping). nullopt when it is not a CIDR.
std::optional<Subnet> parse_subnet(std::string_view text, bool* host_bits_set = nullptr);

// dockerd 20.10's local-scope default pools, in order (libnetwork ipamutils): 172.17.0.0/16 to
// 172.31.0.0/16, then 192.168.0.0/16 cut into /20s.
const std::vector<Subnet>& default_pools();

// Docker's MAC for an address: 02:42 and the address's four bytes ("02:42:ac:11:00:02").
std::string mac_for(Ipv4 address);

}  // namespace kiln::daemon::networks

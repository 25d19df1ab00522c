#include "agent/guest_network.h"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>

#include "common/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

ifreq request_for(const std::string& interface) {
  ifreq request{};
  std::strncpy(request.ifr_name, interface.c_str(), IFNAMSIZ - 1);
  return request;
}

sockaddr ipv4_sockaddr(in_addr address) {
  sockaddr out{};
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr = address;
  std::memcpy(&out, &in, sizeof(in));
  return out;
}

Result<void> interface_ioctl(int fd, unsigned long request, ifreq& data, std::string_view what,
                             const std::string& interface) {
  if (::ioctl(fd, request, &data) != 0) return Error::last_os_error(fmt::format("{} of {}", what, interface));
  return ok();
}

Result<UniqueFd> ioctl_socket() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::last_os_error("socket for interface ioctls");
  return fd;
}

// Clears IFF_UP; the flags it had otherwise, to bring it up with later.
Result<ifreq> take_link_down(int fd, const std::string& interface) {
  ifreq flags = request_for(interface);
  KILN_TRY(interface_ioctl(fd, SIOCGIFFLAGS, flags, "get the flags", interface));
  flags.ifr_flags = static_cast<short>(flags.ifr_flags & ~IFF_UP);
  KILN_TRY(interface_ioctl(fd, SIOCSIFFLAGS, flags, "take down", interface));
  return flags;
}

std::string current_mac(const std::string& sys_class_net, const std::string& interface) {
  std::FILE* file = std::fopen((sys_class_net + "/" + interface + "/address").c_str(), "re");
  if (!file) return {};
  char text[32] = {};
  std::string out = std::fgets(text, sizeof(text), file) ? std::string(text) : std::string();
  (void)std::fclose(file);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

bool same_mac(std::string a, std::string b) {
  auto lower = [](std::string& text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  };
  lower(a);
  lower(b);
  return a == b;
}

}  // namespace

std::vector<std::string> virtio_net_interfaces(const std::string& sys_class_net) {
  std::vector<std::string> out;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(sys_class_net, error)) {
    auto driver = std::filesystem::read_symlink(entry.path() / "device" / "driver", error);
    if (!error && driver.filename() == "virtio_net") out.push_back(entry.path().filename());
    error.clear();
  }
  // eth2 before eth10: shorter names first, then by name.
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  return out;
}

Result<void> configure_interface(const std::string& interface, const InterfaceConfig& config,
                                 bool default_route) {
  KILN_TRY(validate_interface_config(config));
  UniqueFd fd = KILN_TRY(ioctl_socket());
  ifreq flags = KILN_TRY(take_link_down(fd.get(), interface));

  ifreq mac = request_for(interface);
  mac.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  unsigned octets[6] = {};
  (void)std::sscanf(config.mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &octets[0], &octets[1], &octets[2],
                    &octets[3], &octets[4], &octets[5]);
  for (int i = 0; i < 6; ++i) mac.ifr_hwaddr.sa_data[i] = static_cast<char>(octets[i]);
  KILN_TRY(interface_ioctl(fd.get(), SIOCSIFHWADDR, mac, "set the MAC address", interface));

  if (config.mtu != 0) {
    ifreq mtu = request_for(interface);
    mtu.ifr_mtu = static_cast<int>(config.mtu);
    KILN_TRY(interface_ioctl(fd.get(), SIOCSIFMTU, mtu, "set the MTU", interface));
  }

  auto slash = config.address.find('/');
  in_addr address{};
  ::inet_pton(AF_INET, config.address.substr(0, slash).c_str(), &address);
  int prefix = std::stoi(config.address.substr(slash + 1));
  ifreq address_request = request_for(interface);
  address_request.ifr_addr = ipv4_sockaddr(address);
  KILN_TRY(interface_ioctl(fd.get(), SIOCSIFADDR, address_request, "set the address", interface));
  in_addr mask{};
  mask.s_addr = htonl(prefix == 32 ? ~0U : ~(~0U >> prefix));
  ifreq mask_request = request_for(interface);
  mask_request.ifr_netmask = ipv4_sockaddr(mask);
  KILN_TRY(interface_ioctl(fd.get(), SIOCSIFNETMASK, mask_request, "set the netmask", interface));

  flags.ifr_flags = static_cast<short>(flags.ifr_flags | IFF_UP);
  KILN_TRY(interface_ioctl(fd.get(), SIOCSIFFLAGS, flags, "bring up", interface));

  if (default_route && !config.gateway.empty()) {
    rtentry route{};
    route.rt_dst = ipv4_sockaddr(in_addr{});
    route.rt_genmask = ipv4_sockaddr(in_addr{});
    in_addr gateway{};
    ::inet_pton(AF_INET, config.gateway.c_str(), &gateway);
    route.rt_gateway = ipv4_sockaddr(gateway);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    std::string device = interface;
    route.rt_dev = device.data();
    // Whatever default route there was (a reconfiguration) goes first; none is fine.
    rtentry old{};
    old.rt_dst = ipv4_sockaddr(in_addr{});
    old.rt_genmask = ipv4_sockaddr(in_addr{});
    while (::ioctl(fd.get(), SIOCDELRT, &old) == 0) {
    }
    if (::ioctl(fd.get(), SIOCADDRT, &route) != 0)
      return Error::last_os_error(
          fmt::format("add the default route via {} on {}", config.gateway, interface));
  }
  return ok();
}

std::string device_mac_of(const std::string& interface) {
  // The permanent address: what the device reported when the driver registered it. A clone's kernel
  // registered it in its template, whose devices had the same per-slot MACs.
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return {};
  // ethtool_perm_addr ends in a flexible array: the header, then room for the address.
  alignas(ethtool_perm_addr) uint8_t buffer[sizeof(ethtool_perm_addr) + MAX_ADDR_LEN] = {};
  ethtool_perm_addr header{.cmd = ETHTOOL_GPERMADDR, .size = MAX_ADDR_LEN};
  std::memcpy(buffer, &header, sizeof(header));
  ifreq request = request_for(interface);
  request.ifr_data = reinterpret_cast<char*>(buffer);
  if (::ioctl(fd.get(), SIOCETHTOOL, &request) != 0) return {};
  std::memcpy(&header, buffer, sizeof(header));
  if (header.size != 6) return {};
  const uint8_t* mac = buffer + sizeof(ethtool_perm_addr);
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4],
                     mac[5]);
}

Result<std::vector<std::string>> interfaces_for(
    const std::vector<InterfaceConfig>& configs, const std::string& sys_class_net,
    const std::function<std::string(const std::string&)>& device_mac) {
  std::vector<std::string> interfaces = virtio_net_interfaces(sys_class_net);
  std::vector<std::string> chosen(configs.size());
  std::vector<std::string> unclaimed = interfaces;
  auto claim = [&](size_t i, const std::function<std::string(const std::string&)>& mac_of,
                   const std::string& wanted) {
    auto match = std::find_if(unclaimed.begin(), unclaimed.end(), [&](const std::string& interface) {
      return same_mac(mac_of(interface), wanted);
    });
    if (match == unclaimed.end()) return false;
    chosen[i] = *match;
    unclaimed.erase(match);
    return true;
  };
  // A config naming its device gets that interface, whatever MAC the guest gave it.
  for (size_t i = 0; i < configs.size(); ++i) {
    if (configs[i].device_mac.empty()) continue;
    if (!claim(i, device_mac, configs[i].device_mac))
      return Error::failed_precondition(
          fmt::format("the guest has no network interface with device address {}", configs[i].device_mac));
  }
  if (unclaimed.size() < static_cast<size_t>(std::count(chosen.begin(), chosen.end(), std::string())))
    return Error::failed_precondition(fmt::format(
        "the guest has {} network interface(s), the host configures {}", interfaces.size(), configs.size()));
  auto current = [&](const std::string& interface) { return current_mac(sys_class_net, interface); };
  for (size_t i = 0; i < configs.size(); ++i) {
    if (chosen[i].empty()) claim(i, current, configs[i].mac);
  }
  size_t next = 0;
  for (auto& name : chosen) {
    if (name.empty()) name = unclaimed[next++];
  }
  return chosen;
}

Result<void> take_down_interface(const std::string& interface) {
  UniqueFd fd = KILN_TRY(ioctl_socket());
  KILN_TRY(take_link_down(fd.get(), interface));
  // Setting 0.0.0.0 deletes the interface's address (and with it its subnet's route).
  ifreq address = request_for(interface);
  address.ifr_addr = ipv4_sockaddr(in_addr{});
  if (::ioctl(fd.get(), SIOCSIFADDR, &address) != 0 && errno != EADDRNOTAVAIL)
    return Error::last_os_error(fmt::format("remove the address of {}", interface));
  return ok();
}

Result<void> apply_network_config(const std::vector<InterfaceConfig>& configs,
                                  const std::string& sys_class_net) {
  std::vector<std::string> chosen = KILN_TRY(interfaces_for(configs, sys_class_net, device_mac_of));
  for (const auto& config : configs) {
    if (config.dns.empty()) continue;
    // The guest's own resolver (a VM booted into its root disk; a container gets its resolv.conf in its
    // root).
    std::string text;
    for (const auto& server : config.dns) text += "nameserver " + server + "\n";
    std::error_code error;
    if (std::filesystem::is_directory("/etc", error))
      KILN_TRY(write_file_atomic("/etc/resolv.conf", text, 0644));
    break;
  }
  // Interfaces leaving first: one that carried the default route takes it along, and a config after it may
  // name the interface that carries it now.
  for (size_t i = 0; i < configs.size(); ++i) {
    if (!configs[i].down) continue;
    KILN_TRY_CONTEXT(take_down_interface(chosen[i]), fmt::format("network interface {} ({})", i, chosen[i]));
    log::info("network interface taken down", {{"interface", chosen[i]}});
  }
  bool routed = false;
  for (size_t i = 0; i < configs.size(); ++i) {
    if (configs[i].down) continue;
    bool default_route = configs[i].default_route.value_or(!routed && !configs[i].gateway.empty());
    KILN_TRY_CONTEXT(configure_interface(chosen[i], configs[i], default_route),
                     fmt::format("network interface {} ({})", i, chosen[i]));
    routed = routed || default_route;
    log::info("network interface configured",
              {{"interface", chosen[i]}, {"address", configs[i].address}, {"mac", configs[i].mac}});
  }
  return ok();
}

}  // namespace kiln::agent

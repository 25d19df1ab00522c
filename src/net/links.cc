#include "net/links.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>  // before the linux/ headers, which would define the IFF_ flags a second time
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <map>

namespace kiln::net::links {
namespace {

Result<UniqueFd> control_socket() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::last_os_error("socket for link ioctls");
  return fd;
}

ifreq request_for(const std::string& name) {
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), std::min(name.size(), sizeof(request.ifr_name) - 1));
  return request;
}

Result<int> index_of(const std::string& name) {
  unsigned index = ::if_nametoindex(name.c_str());
  if (index == 0) return Error::from_errno(fmt::format("find link {}", name), errno);
  return static_cast<int>(index);
}

Result<void> set_flags(const std::string& name, short set, short clear) {
  auto fd = KILN_TRY(control_socket());
  ifreq request = request_for(name);
  if (::ioctl(fd.get(), SIOCGIFFLAGS, &request) != 0) return Error::last_os_error("get flags of " + name);
  request.ifr_flags = static_cast<short>((request.ifr_flags | set) & ~clear);
  if (::ioctl(fd.get(), SIOCSIFFLAGS, &request) != 0) return Error::last_os_error("set flags of " + name);
  return ok();
}

struct Ipv4Cidr {
  in_addr address{};
  int prefix = 0;
};

Result<Ipv4Cidr> parse_cidr(const std::string& cidr) {
  auto slash = cidr.find('/');
  Ipv4Cidr out;
  std::string address = cidr.substr(0, slash);
  if (slash == std::string::npos || ::inet_pton(AF_INET, address.c_str(), &out.address) != 1)
    return Error::invalid_argument(fmt::format("invalid IPv4 address/prefix {:?}", cidr));
  std::string_view prefix = std::string_view(cidr).substr(slash + 1);
  auto [end, error] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), out.prefix);
  if (error != std::errc() || end != prefix.data() + prefix.size() || out.prefix < 1 || out.prefix > 32)
    return Error::invalid_argument(fmt::format("invalid IPv4 address/prefix {:?}", cidr));
  return out;
}

sockaddr ipv4_sockaddr(in_addr address) {
  sockaddr out{};
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr = address;
  std::memcpy(&out, &in, sizeof(in));
  return out;
}

// One rtnetlink dump request (RTM_GETLINK or RTM_GETADDR); calls `each` with every message of the reply.
Result<void> dump(uint16_t type, unsigned char family, const std::function<void(const nlmsghdr&)>& each) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return Error::last_os_error("netlink socket");
  struct {
    nlmsghdr header;
    rtgenmsg body;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = type;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  request.body.rtgen_family = family;
  if (::send(fd.get(), &request, sizeof(request), 0) < 0) return Error::last_os_error("netlink dump request");
  std::vector<char> buffer(64 * 1024);
  for (;;) {
    ssize_t got = ::recv(fd.get(), buffer.data(), buffer.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error::last_os_error("netlink dump");
    auto remaining = static_cast<unsigned>(got);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(header, remaining);
         header = NLMSG_NEXT(header, remaining)) {
      if (header->nlmsg_type == NLMSG_DONE) return ok();
      if (header->nlmsg_type == NLMSG_ERROR) {
        auto* error = static_cast<nlmsgerr*>(NLMSG_DATA(header));
        return Error::from_errno("netlink dump", -error->error);
      }
      each(*header);
    }
  }
}

// The attributes of a netlink message after its fixed header of `header_size` bytes.
std::map<unsigned short, std::string_view> attributes(const nlmsghdr& message, size_t header_size) {
  std::map<unsigned short, std::string_view> out;
  auto* first = reinterpret_cast<const char*>(NLMSG_DATA(&message)) + NLMSG_ALIGN(header_size);
  int length = static_cast<int>(message.nlmsg_len) - static_cast<int>(NLMSG_LENGTH(header_size));
  for (auto* attribute = reinterpret_cast<const rtattr*>(first); RTA_OK(attribute, length);
       attribute = RTA_NEXT(attribute, length)) {
    out[attribute->rta_type] =
        std::string_view(static_cast<const char*>(RTA_DATA(attribute)), RTA_PAYLOAD(attribute));
  }
  return out;
}

std::string c_string(std::string_view bytes) {
  return std::string(bytes.substr(0, bytes.find('\0')));
}

}  // namespace

Result<void> validate_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name.find_first_of("/ \t\n:") != std::string::npos)
    return Error::invalid_argument(
        fmt::format("invalid interface name {:?} (1-15 bytes, no '/', ':' or space)", name));
  return ok();
}

bool exists(const std::string& name) {
  return ::if_nametoindex(name.c_str()) != 0;
}

Result<void> add_bridge(const std::string& name) {
  KILN_TRY(validate_name(name));
  auto fd = KILN_TRY(control_socket());
  if (::ioctl(fd.get(), SIOCBRADDBR, name.c_str()) != 0 && errno != EEXIST)
    return Error::last_os_error("create bridge " + name);
  return ok();
}

Result<void> delete_bridge(const std::string& name) {
  KILN_TRY(validate_name(name));
  if (!exists(name)) return ok();
  KILN_TRY(set_flags(name, 0, IFF_UP));
  auto fd = KILN_TRY(control_socket());
  if (::ioctl(fd.get(), SIOCBRDELBR, name.c_str()) != 0 && errno != ENXIO)
    return Error::last_os_error("delete bridge " + name);
  return ok();
}

Result<void> set_up(const std::string& name) {
  return set_flags(name, IFF_UP, 0);
}

Result<void> set_ipv4(const std::string& name, const std::string& cidr) {
  auto parsed = KILN_TRY(parse_cidr(cidr));
  auto fd = KILN_TRY(control_socket());
  ifreq request = request_for(name);
  request.ifr_addr = ipv4_sockaddr(parsed.address);
  if (::ioctl(fd.get(), SIOCSIFADDR, &request) != 0)
    return Error::last_os_error("set the address of " + name);
  in_addr mask{};
  mask.s_addr = htonl(parsed.prefix == 0 ? 0 : ~uint32_t{0} << (32 - parsed.prefix));
  request = request_for(name);
  request.ifr_netmask = ipv4_sockaddr(mask);
  if (::ioctl(fd.get(), SIOCSIFNETMASK, &request) != 0)
    return Error::last_os_error("set the netmask of " + name);
  return ok();
}

Result<void> attach_to_bridge(const std::string& link, const std::string& bridge) {
  int index = KILN_TRY(index_of(link));
  auto fd = KILN_TRY(control_socket());
  ifreq request = request_for(bridge);
  request.ifr_ifindex = index;
  if (::ioctl(fd.get(), SIOCBRADDIF, &request) != 0)
    return Error::last_os_error(fmt::format("attach {} to bridge {}", link, bridge));
  return ok();
}

Result<void> detach_from_bridge(const std::string& link, const std::string& bridge) {
  auto index = index_of(link);
  if (!index) return ok();  // the tap went with its monitor
  auto fd = KILN_TRY(control_socket());
  ifreq request = request_for(bridge);
  request.ifr_ifindex = *index;
  // EINVAL: not a port of that bridge; ENODEV: no such bridge. Either way it is off it.
  if (::ioctl(fd.get(), SIOCBRDELIF, &request) != 0 && errno != EINVAL && errno != ENODEV)
    return Error::last_os_error(fmt::format("detach {} from bridge {}", link, bridge));
  return ok();
}

Result<UniqueFd> open_tap(const std::string& bridge, std::string* name) {
  UniqueFd tap(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tap) return Error::last_os_error("open /dev/net/tun");
  ifreq request = request_for("ktap%d");
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tap.get(), TUNSETIFF, &request) != 0) return Error::last_os_error("create a tap");
  std::string tap_name = request.ifr_name;
  if (!bridge.empty()) KILN_TRY(attach_to_bridge(tap_name, bridge));
  KILN_TRY(set_up(tap_name));
  if (name) *name = tap_name;
  return tap;
}

Result<std::vector<LinkInfo>> list() {
  std::map<int, LinkInfo> by_index;
  std::map<int, int> master_of;
  KILN_TRY(dump(RTM_GETLINK, AF_UNSPEC, [&](const nlmsghdr& message) {
    if (message.nlmsg_type != RTM_NEWLINK) return;
    auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(&message));
    auto found = attributes(message, sizeof(ifinfomsg));
    LinkInfo link;
    link.name = c_string(found[IFLA_IFNAME]);
    link.up = (info->ifi_flags & IFF_UP) != 0;
    if (auto master = found.find(IFLA_MASTER);
        master != found.end() && master->second.size() >= sizeof(int)) {
      int index = 0;
      std::memcpy(&index, master->second.data(), sizeof(index));
      master_of[info->ifi_index] = index;
    }
    if (auto linkinfo = found.find(IFLA_LINKINFO); linkinfo != found.end()) {
      int length = static_cast<int>(linkinfo->second.size());
      for (auto* nested = reinterpret_cast<const rtattr*>(linkinfo->second.data()); RTA_OK(nested, length);
           nested = RTA_NEXT(nested, length)) {
        if (nested->rta_type == IFLA_INFO_KIND)
          link.kind =
              c_string(std::string_view(static_cast<const char*>(RTA_DATA(nested)), RTA_PAYLOAD(nested)));
      }
    }
    by_index[info->ifi_index] = std::move(link);
  }));
  KILN_TRY(dump(RTM_GETADDR, AF_INET, [&](const nlmsghdr& message) {
    if (message.nlmsg_type != RTM_NEWADDR) return;
    auto* info = static_cast<const ifaddrmsg*>(NLMSG_DATA(&message));
    auto found = attributes(message, sizeof(ifaddrmsg));
    auto local = found.find(IFA_LOCAL);
    if (local == found.end()) local = found.find(IFA_ADDRESS);
    if (local == found.end() || local->second.size() != 4) return;
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, local->second.data(), text, sizeof(text));
    auto link = by_index.find(static_cast<int>(info->ifa_index));
    if (link != by_index.end()) link->second.ipv4.push_back(fmt::format("{}/{}", text, info->ifa_prefixlen));
  }));
  std::vector<LinkInfo> out;
  for (auto& [index, link] : by_index) {
    if (auto master = master_of.find(index); master != master_of.end()) {
      if (auto bridge = by_index.find(master->second); bridge != by_index.end())
        link.master = bridge->second.name;
    }
    out.push_back(link);
  }
  return out;
}

}  // namespace kiln::net::links

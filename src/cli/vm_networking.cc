#include "cli/vm_networking.h"

#include <arpa/inet.h>
#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "common/units.h"

namespace kiln::cli {
namespace {

bool is_ipv4(const std::string& text) {
  in_addr address{};
  return ::inet_pton(AF_INET, text.c_str(), &address) == 1;
}

bool is_ipv6(const std::string& text) {
  in6_addr address{};
  return ::inet_pton(AF_INET6, text.c_str(), &address) == 1;
}

Result<Json> one_network(const std::string& spec) {
  auto colon = spec.find(':');
  std::string name = spec.substr(0, colon);
  if (name.empty()) return Error::invalid_argument(fmt::format("--network {}: expected NAME[:IPV4]", spec));
  if (colon == std::string::npos) return Json(name);
  std::string ipv4 = spec.substr(colon + 1);
  if (name == "none") {
    return Error::invalid_argument(
        fmt::format("--network {}: none means no NIC, so it takes no address", spec));
  }
  if (!is_ipv4(ipv4)) {
    return Error::invalid_argument(fmt::format("--network {}: {:?} is not an IPv4 address", spec, ipv4));
  }
  return Json{{"network", name}, {"ipv4", ipv4}};
}

// A port number of a -p value; `what` names the part as the docker CLI does ("hostPort", "containerPort").
Result<uint16_t> port_number(const std::string& text, std::string_view what, uint16_t min) {
  if (auto dash = text.find('-'); dash != std::string::npos && dash > 0) {
    return Error::invalid_argument(fmt::format("port ranges are not supported: {}", text));
  }
  auto port = parse_unsigned<uint16_t>(text, what, min);
  if (!port) return Error::invalid_argument(fmt::format("invalid {}: {}", what, text));
  return *port;
}

// nat.ParsePortSpec's reading: the guest port (with its protocol) after the last ':', the host port before
// it, and everything ahead of that the host address (which may itself hold colons: "[::1]:80:80").
Result<Json> parse_publication(std::string_view spec) {
  size_t last = spec.rfind(':');
  std::string guest_part(last == std::string_view::npos ? spec : spec.substr(last + 1));
  std::string host_port;
  std::string host_ip;
  if (last != std::string_view::npos) {
    std::string_view before = spec.substr(0, last);
    size_t previous = before.rfind(':');
    host_port = std::string(previous == std::string_view::npos ? before : before.substr(previous + 1));
    if (previous != std::string_view::npos) host_ip = std::string(before.substr(0, previous));
  }

  std::string protocol = "tcp";
  if (auto slash = guest_part.find('/'); slash != std::string::npos) {
    std::string given = guest_part.substr(slash + 1);
    guest_part.resize(slash);
    if (!given.empty()) protocol = given;
    std::transform(protocol.begin(), protocol.end(), protocol.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  if (protocol != "tcp" && protocol != "udp") {
    return Error::invalid_argument(fmt::format("invalid proto: {} (Kiln publishes tcp or udp)", protocol));
  }
  if (guest_part.empty()) return Error::invalid_argument("no port specified");
  uint16_t guest_port = KILN_TRY(port_number(guest_part, "containerPort", 1));
  uint16_t host = host_port.empty() ? 0 : KILN_TRY(port_number(host_port, "hostPort", 0));

  if (host_ip.size() >= 2 && host_ip.front() == '[' && host_ip.back() == ']') {
    host_ip = host_ip.substr(1, host_ip.size() - 2);
    if (!is_ipv6(host_ip)) return Error::invalid_argument(fmt::format("invalid IP address: [{}]", host_ip));
  } else if (!host_ip.empty() && !is_ipv4(host_ip) && !is_ipv6(host_ip)) {
    return Error::invalid_argument(fmt::format("invalid IP address: {}", host_ip));
  }

  Json port = {{"protocol", protocol}, {"host_port", host}, {"guest_port", guest_port}};
  if (!host_ip.empty()) port["host_ip"] = host_ip;
  return port;
}

}  // namespace

Result<Json> networks_json(const std::vector<std::string>& specs) {
  Json networks = Json::array();
  if (specs.size() == 1 && specs.front() == "none") return networks;
  for (const auto& spec : specs) {
    if (spec == "none") {
      return Error::invalid_argument("--network none (no NIC) cannot be combined with other networks");
    }
    networks.push_back(KILN_TRY(one_network(spec)));
  }
  return networks;
}

Result<Json> publication_json(std::string_view spec) {
  auto port = parse_publication(spec);
  if (!port) {
    return Error::invalid_argument(fmt::format(
        "-p {}: {} (expected [HOST_IP:][HOST_PORT:]GUEST_PORT[/tcp|udp])", spec, port.error().message()));
  }
  return std::move(*port);
}

std::string no_address_reason(const Json& vm) {
  std::string name = vm.value("name", vm.value("id", std::string("?")));
  std::string state = vm.value("state", "");
  auto networks = vm.find("networks");
  if (networks == vm.end() || !networks->is_array() || networks->empty()) {
    return fmt::format("VM {} has no IP address: it is on no network", name);
  }
  if (state != "running" && state != "paused") {
    return fmt::format("VM {} is {}: it has an IP address only while it runs", name,
                       state.empty() ? "not running" : state);
  }
  return fmt::format("VM {} has no IP address: it runs without a NIC (kilnd's guest networking is off)",
                     name);
}

}  // namespace kiln::cli

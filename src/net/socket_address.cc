#include "net/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>

namespace kiln::net {

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET)
    reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  else
    reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
}

std::string SocketAddress::ip() const {
  char text[INET6_ADDRSTRLEN] = "";
  if (family() == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text, sizeof text);
  else
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, text, sizeof text);
  return text;
}

std::string SocketAddress::to_string() const {
  if (family() == AF_INET) return ip() + ":" + std::to_string(port());
  return "[" + ip() + "]:" + std::to_string(port());
}

Result<SocketAddress> parse_ip(std::string_view text, uint16_t port) {
  std::string ip(text);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  SocketAddress address;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  if (::inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    address.length = sizeof(sockaddr_in);
    return address;
  }
  if (::inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    address.length = sizeof(sockaddr_in6);
    return address;
  }
  return Error::invalid_argument(fmt::format("invalid IP address: {:?}", std::string(text)));
}

Result<SocketAddress> parse_ip_port(std::string_view text, uint16_t default_port) {
  std::string_view host = text;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos)
      return Error::invalid_argument(fmt::format("invalid address {:?}", text));
    host = text.substr(0, close + 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return Error::invalid_argument(fmt::format("invalid address {:?}", text));
      port_text = text.substr(close + 2);
    }
  } else if (text.find(':') == text.rfind(':') && text.find(':') != std::string_view::npos) {
    // One colon: IPv4 with a port (a bare IPv6 address has at least two).
    host = text.substr(0, text.find(':'));
    port_text = text.substr(text.find(':') + 1);
  }
  uint16_t port = default_port;
  if (!port_text.empty() || host.size() != text.size()) {
    unsigned value = 0;
    auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
        value == 0 || value > 65535)
      return Error::invalid_argument(fmt::format("invalid port in address {:?}", text));
    port = static_cast<uint16_t>(value);
  }
  return parse_ip(host, port);
}

}  // namespace kiln::net

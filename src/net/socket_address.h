// SocketAddress: an IPv4 or IPv6 socket address parsed from text, for the net module's sockets. Value type;
// any thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::net {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
  void set_port(uint16_t port);
  uint16_t port() const;
  // "1.2.3.4" or "::1" (no brackets).
  std::string ip() const;
  // "1.2.3.4:53" or "[::1]:53".
  std::string to_string() const;
};

// "1.2.3.4", "::1" or "[::1]" with `port`.
Result<SocketAddress> parse_ip(std::string_view text, uint16_t port);
// "1.2.3.4", "1.2.3.4:53", "::1", "[::1]:53"; no port: `default_port`.
Result<SocketAddress> parse_ip_port(std::string_view text, uint16_t default_port);

}  // namespace kiln::net

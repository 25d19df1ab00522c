#include "daemon/networks/ipv4.h"

#include <fmt/format.h>

#include <charconv>

namespace kiln::daemon::networks {

std::optional<Ipv4> parse_ipv4(std::string_view text) {
  Ipv4 address = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    // Go's parser refuses leading zeros ("010"), which other parsers read as octal.
    if (digits == 0 || digits > 3 || (digits > 1 && text.front() == '0')) return std::nullopt;
    unsigned value = 0;
    std::from_chars(text.data(), text.data() + digits, value);
    if (value > 255) return std::nullopt;
    address = (address << 8) | value;
    text.remove_prefix(digits);
  }
  if (!text.empty()) return std::nullopt;
  return address;
}

std::string format_ipv4(Ipv4 address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff,
                     address & 0xff);
}

bool looks_like_ipv6(std::string_view text) {
  return text.find(':') != std::string_view::npos;
}

std::string Subnet::to_string() const {
  return fmt::format("{}/{}", format_ipv4(base), prefix);
}

std::optional<Subnet> parse_subnet(std::string_view text, bool* host_bits_set) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto address = parse_ipv4(text.substr(0, slash));
  std::string_view length = text.substr(slash + 1);
  int prefix = -1;
  if (length.empty() || length.size() > 2 || (length.size() > 1 && length.front() == '0'))
    return std::nullopt;
  auto [end, error] = std::from_chars(length.data(), length.data() + length.size(), prefix);
  if (!address || error != std::errc() || end != length.data() + length.size() || prefix < 0 || prefix > 32)
    return std::nullopt;
  Subnet subnet{.base = 0, .prefix = prefix};
  subnet.base = *address & subnet.mask();
  if (host_bits_set != nullptr) *host_bits_set = subnet.base != *address;
  return subnet;
}

const std::vector<Subnet>& default_pools() {
  static const std::vector<Subnet> pools = [] {
    std::vector<Subnet> list;
    for (Ipv4 second = 17; second <= 31; ++second)
      list.push_back({.base = (172u << 24) | (second << 16), .prefix = 16});
    for (Ipv4 third = 0; third < 256; third += 16)
      list.push_back({.base = (192u << 24) | (168u << 16) | (third << 8), .prefix = 20});
    return list;
  }();
  return pools;
}

std::string mac_for(Ipv4 address) {
  return fmt::format("02:42:{:02x}:{:02x}:{:02x}:{:02x}", address >> 24, (address >> 16) & 0xff,
                     (address >> 8) & 0xff, address & 0xff);
}

}  // namespace kiln::daemon::networks

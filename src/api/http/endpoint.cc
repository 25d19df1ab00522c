#include "api/http/endpoint.h"

#include "common/units.h"

namespace kiln::api::http {
namespace {

constexpr std::string_view kUnixScheme = "unix://";
constexpr std::string_view kTcpScheme = "tcp://";
constexpr std::string_view kHttpScheme = "http://";

Error bad(std::string_view text, std::string_view why) {
  return Error::invalid_argument(fmt::format("invalid endpoint \"{}\": {}", text, why));
}

Result<Endpoint> parse_unix(std::string_view text, std::string_view rest) {
  if (rest.empty() || rest.front() != '/')
    return bad(text, "unix socket path must be absolute (unix:///path)");
  if (rest.find('\0') != std::string_view::npos) return bad(text, "path contains a NUL byte");
  return Endpoint{.kind = Endpoint::Kind::kUnix, .path = std::string(rest)};
}

Result<Endpoint> parse_tcp(std::string_view text, std::string_view rest) {
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);  // "tcp://host:80/" as docker accepts
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {  // [v6]:port
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad(text, "unterminated [ in IPv6 address");
    host = rest.substr(1, close - 1);
    rest.remove_prefix(close + 1);
    if (rest.empty() || rest.front() != ':') return bad(text, "expected :PORT after the IPv6 address");
    port = rest.substr(1);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad(text, "expected tcp://HOST:PORT");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return bad(text, "IPv6 addresses need brackets: tcp://[::1]:PORT");
  }
  if (host.find_first_of("/?#@ ") != std::string_view::npos)
    return bad(text, "host contains a path or odd characters");
  auto value = parse_unsigned<uint16_t>(port, "port");
  if (!value) return bad(text, "port must be a number from 0 to 65535");
  return Endpoint{.kind = Endpoint::Kind::kTcp,
                  .host = host.empty() ? std::string("127.0.0.1") : std::string(host),
                  .port = *value};
}

}  // namespace

std::string Endpoint::to_string() const {
  if (kind == Kind::kUnix) return fmt::format("unix://{}", path);
  if (host.find(':') != std::string::npos) return fmt::format("tcp://[{}]:{}", host, port);
  return fmt::format("tcp://{}:{}", host, port);
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  if (text.starts_with(kUnixScheme)) return parse_unix(text, text.substr(kUnixScheme.size()));
  if (text.starts_with(kTcpScheme)) return parse_tcp(text, text.substr(kTcpScheme.size()));
  return bad(text, "expected unix:///path or tcp://HOST:PORT");
}

Result<Endpoint> parse_client_endpoint(std::string_view text) {
  if (text.starts_with('/')) return parse_unix(text, text);
  if (text.starts_with(kHttpScheme)) return parse_tcp(text, text.substr(kHttpScheme.size()));
  return parse_endpoint(text);
}

}  // namespace kiln::api::http

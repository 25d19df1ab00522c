// Endpoint: where an HTTP API listens or is reached, parsed from dockerd-style `-H` strings
// ("unix:///run/kiln/kiln.sock", "tcp://127.0.0.1:2375"). Plain value; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::api::http {

struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;   // kUnix: filesystem path of the socket
  std::string host;   // kTcp: IP literal or name; IPv6 without brackets
  uint16_t port = 0;  // kTcp: 0 asks the server for an ephemeral port

  // Canonical form, accepted back by parse_endpoint: "unix:///x.sock", "tcp://[::1]:80".
  std::string to_string() const;
};

// Server side (`kilnd -H`): "unix:///abs/path" or "tcp://HOST:PORT"; an empty HOST ("tcp://:2375") means
// 127.0.0.1, never all interfaces, so exposing the API takes an explicit 0.0.0.0.
Result<Endpoint> parse_endpoint(std::string_view text);

// Client side (KILN_HOST, `kiln -H`): the same, plus "http://HOST:PORT" and a bare absolute path as unix.
Result<Endpoint> parse_client_endpoint(std::string_view text);

}  // namespace kiln::api::http

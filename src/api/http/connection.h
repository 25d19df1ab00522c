// The per-connection codec of the server: reads requests with Beast, dispatches them through the Router and
// writes replies in the three modes. Internal to src/api/http (server.cc calls it on a connection thread).
#pragma once

#include <string>

#include "api/http/message.h"
#include "api/http/router.h"
#include "api/http/server.h"

namespace kiln::api::http::detail {

struct ConnectionContext {
  int fd;       // the accepted socket, owned by the Server
  int stop_fd;  // readable once the server stops
  const Router& router;
  const ServerOptions& options;
  std::string peer;
};

// Serves requests until the connection closes, fails, is hijacked, or the server stops. Never throws.
void serve_connection(const ConnectionContext& context);

// A complete response as bytes (status line, headers, Content-Length, body).
std::string render_response(const Response& response, bool keep_alive, bool include_body = true);

}  // namespace kiln::api::http::detail

// Unix-domain stream sockets: connect to and listen on a path. Returned fds are close-on-exec.
#pragma once

#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln {

// kNotFound when nothing is at `path`, kUnavailable when nobody listens there. The error reads
// "<what>: <strerror>"; `what` defaults to "connect <path>". To wait for a socket to appear, see
// connect_retry.h.
Result<UniqueFd> connect_unix_socket(const std::string& path, std::string_view what = {});
// Binds and listens on `path` (an existing socket file there is replaced).
Result<UniqueFd> listen_unix_socket(const std::string& path, int backlog = 64);

}  // namespace kiln

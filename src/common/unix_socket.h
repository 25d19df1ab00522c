// Unix-domain stream sockets: connect to and listen on a path. Returned fds are close-on-exec.
#pragma once

#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln {

// kNotFound when nothing is at `path`, kUnavailable when nobody listens there.
Result<UniqueFd> connect_unix_socket(const std::string& path);
// Binds and listens on `path` (an existing socket file there is replaced).
Result<UniqueFd> listen_unix_socket(const std::string& path, int backlog = 64);

}  // namespace kiln

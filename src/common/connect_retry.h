// Connecting to a unix socket that its server has not created yet (QEMU's monitor while QEMU starts, a
// daemon's API socket right after launch): the one retry loop, with a deadline and a way to give up early
// when the server died. Blocking; any thread.
#pragma once

#include <chrono>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln {

struct ConnectRetry {
  std::chrono::milliseconds timeout{5000};  // how long the socket may take to appear and accept
  std::chrono::milliseconds interval{10};   // between attempts
  // Readable (e.g. the server process's pidfd, or a pipe it holds) means the server is gone: stop waiting.
  int give_up_fd = -1;
};

// connect_unix_socket(path), retried while nothing is at `path` yet or nobody listens there (ENOENT,
// ECONNREFUSED). Other errors are returned at once. kTimeout when `timeout` passes; kCancelled when
// `give_up_fd` becomes readable first.
Result<UniqueFd> connect_unix_socket_retrying(const std::string& path, const ConnectRetry& retry);

}  // namespace kiln

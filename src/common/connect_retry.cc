#include "common/connect_retry.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "common/unix_socket.h"

namespace kiln {

Result<UniqueFd> connect_unix_socket_retrying(const std::string& path, const ConnectRetry& retry) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + retry.timeout;
  for (;;) {
    auto fd = connect_unix_socket(path);
    if (fd) return fd;
    ErrorCategory category = fd.error().category();
    if (category != ErrorCategory::kNotFound && category != ErrorCategory::kUnavailable) return fd.error();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return Error::timeout(fmt::format("{} did not accept connections within {} ms ({})", path,
                                        retry.timeout.count(), fd.error().message()));
    }
    // Sleep by polling the give-up fd: a server that died ends the wait at once.
    pollfd give_up{retry.give_up_fd, POLLIN, 0};
    int wait_ms = static_cast<int>(std::min(left, retry.interval).count());
    int ready = ::poll(&give_up, retry.give_up_fd >= 0 ? 1 : 0, wait_ms);
    if (ready < 0 && errno != EINTR) return Error::last_os_error("poll");
    if (ready > 0) return Error::cancelled(fmt::format("gave up connecting to {}: its server is gone", path));
  }
}

}  // namespace kiln

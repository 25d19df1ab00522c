#include "api/http/socket_stream.h"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/error.hpp>
#include <cerrno>

namespace kiln::api::http::detail {
namespace {

boost::system::error_code errno_code(int errnum) {
  return {errnum, boost::system::system_category()};
}

}  // namespace

bool SocketStream::wait(short events, boost::system::error_code& ec) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline_) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now()).count();
      if (left <= 0) {
        ec = boost::asio::error::timed_out;
        return false;
      }
      timeout_ms = static_cast<int>(std::min<long long>(left, 1 << 30));
    }
    pollfd fds[2] = {{.fd = fd_, .events = events}, {.fd = cancel_fd_, .events = POLLIN}};
    int rc = ::poll(fds, cancel_fd_ >= 0 ? 2 : 1, timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      ec = errno_code(errno);
      return false;
    }
    if (cancel_fd_ >= 0 && fds[1].revents != 0) {
      ec = boost::asio::error::operation_aborted;
      return false;
    }
    // HUP/ERR count as ready: the following recv/send reports what actually happened.
    if (fds[0].revents != 0) return true;
  }
}

size_t SocketStream::read_raw(void* data, size_t size, boost::system::error_code& ec) {
  for (;;) {
    ssize_t n = ::recv(fd_, data, size, MSG_DONTWAIT);
    if (n > 0) {
      ec = {};
      return static_cast<size_t>(n);
    }
    if (n == 0) {
      ec = boost::asio::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = errno_code(errno);
      return 0;
    }
    if (!wait(POLLIN, ec)) return 0;
  }
}

size_t SocketStream::write_raw(const void* data, size_t size, boost::system::error_code& ec) {
  for (;;) {
    ssize_t n = ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      ec = {};
      return static_cast<size_t>(n);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = errno_code(errno);
      return 0;
    }
    if (!wait(POLLOUT, ec)) return 0;
  }
}

Result<void> SocketStream::write_all(std::string_view data) {
  while (!data.empty()) {
    boost::system::error_code ec;
    size_t n = write_raw(data.data(), data.size(), ec);
    if (ec == boost::asio::error::timed_out) return Error::timeout("write to peer timed out");
    if (ec == boost::asio::error::operation_aborted) return Error::cancelled("server is stopping");
    if (ec) return Error::unavailable(fmt::format("peer went away: {}", ec.message()));
    data.remove_prefix(n);
  }
  return ok();
}

bool peer_gone(int fd) {
  pollfd pfd{.fd = fd, .events = POLLRDHUP};
  int rc;
  do {
    rc = ::poll(&pfd, 1, 0);
  } while (rc < 0 && errno == EINTR);
  return rc > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace kiln::api::http::detail

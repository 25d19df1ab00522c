#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace kiln {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) {
    // close() errors are not actionable here: the descriptor is gone either way (Linux frees it even on
    // EINTR).
    (void)::close(fd_);
  }
  fd_ = fd;
}

Result<UniqueFd> UniqueFd::duplicate() const {
  int copy = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return Error::last_os_error("dup");
  return UniqueFd(copy);
}

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error::last_os_error("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Result<std::pair<UniqueFd, UniqueFd>> make_socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return Error::last_os_error("socketpair");
  return std::pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Result<void> write_all(int fd, std::string_view data) {
  size_t done = 0;
  // A socket whose peer died (a QEMU that exited under its QMP client) must be an EPIPE error, never a
  // SIGPIPE that kills the writer: send(MSG_NOSIGNAL), and plain write() for what is not a socket.
  bool socket = true;
  while (done < data.size()) {
    ssize_t n = -1;
    if (socket) {
      n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == ENOTSOCK) socket = false;
    }
    if (!socket) n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("write");
    }
    done += static_cast<size_t>(n);
  }
  return ok();
}

Result<std::string> read_to_end(int fd, size_t limit) {
  std::string out;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("read");
    }
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > limit) {
      return Error::invalid_argument(fmt::format("input larger than {} bytes", limit));
    }
    out.append(buffer, static_cast<size_t>(n));
  }
}

Result<void> read_exact(int fd, std::span<char> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("read");
    }
    if (n == 0) return Error::unavailable("unexpected end of stream");
    done += static_cast<size_t>(n);
  }
  return ok();
}

Result<void> set_nonblocking(int fd, bool nonblocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return Error::last_os_error("fcntl(F_GETFL)");
  int wanted = nonblocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) < 0) return Error::last_os_error("fcntl(F_SETFL)");
  return ok();
}

Result<std::string> read_file(const std::string& path, size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", path));
  return KILN_TRY_CONTEXT(read_to_end(fd.get(), limit), path);
}

Result<void> write_file_atomic(const std::string& path, std::string_view contents, int mode) {
  std::string temp = path + ".tmp.XXXXXX";
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("create {}", temp));
  auto cleanup_on_error = [&](Error error) -> Result<void> {
    (void)::unlink(temp.c_str());
    return error;
  };
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0)
    return cleanup_on_error(Error::last_os_error("fchmod"));
  if (auto written = write_all(fd.get(), contents); !written) return cleanup_on_error(written.error());
  if (::fsync(fd.get()) != 0) return cleanup_on_error(Error::last_os_error("fsync"));
  fd.reset();
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return cleanup_on_error(Error::last_os_error(fmt::format("rename to {}", path)));
  }
  return ok();
}

}  // namespace kiln

#include "cli/vm_exec_stream.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "common/stdcopy.h"
#include "common/unique_fd.h"

namespace kiln::cli {
namespace {

constexpr size_t kChunk = 64 * 1024;
// Stop reading stdin while this much of it waits for the socket.
constexpr size_t kMaxPendingInput = 256 * 1024;

bool would_block(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

// Local stdin on its way to the socket.
class InputSide {
 public:
  InputSide(int stdin_fd, int socket) : stdin_fd_(stdin_fd), socket_(socket), open_(stdin_fd >= 0) {}

  bool wants_input() const { return open_ && pending_.size() < kMaxPendingInput; }
  bool wants_socket_write() const { return !pending_.empty(); }

  void read_stdin() {
    char buffer[kChunk];
    ssize_t got = ::read(stdin_fd_, buffer, sizeof buffer);
    if (got < 0 && would_block(errno)) return;
    if (got <= 0) {  // EOF, or an error such as EIO on a hung-up terminal: the input ended either way
      open_ = false;
      finish_if_drained();
      return;
    }
    pending_.append(buffer, static_cast<size_t>(got));
  }

  void write_socket() {
    ssize_t sent = ::send(socket_, pending_.data(), pending_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0 && would_block(errno)) return;
    if (sent < 0) {  // the daemon stopped reading (the process is gone): drop the rest
      pending_.clear();
      open_ = false;
      half_closed_ = true;
      return;
    }
    pending_.erase(0, static_cast<size_t>(sent));
    finish_if_drained();
  }

 private:
  // At the end of local input the socket's write side closes, which the daemon passes on as the process's
  // EOF.
  void finish_if_drained() {
    if (open_ || !pending_.empty() || half_closed_ || stdin_fd_ < 0) return;
    (void)::shutdown(socket_, SHUT_WR);
    half_closed_ = true;
  }

  int stdin_fd_;
  int socket_;
  bool open_;
  bool half_closed_ = false;
  std::string pending_;
};

// The socket's bytes on their way to stdout/stderr.
class OutputSide {
 public:
  explicit OutputSide(const ExecStreamIo& io) : io_(io) {}

  bool write(std::string_view data) {
    if (io_.tty) return emit(1, data);
    return demuxer_.feed(data,
                         [this](int stream, std::string_view payload) { return emit(stream, payload); });
  }

 private:
  bool emit(int stream, std::string_view payload) {
    if (payload.empty()) return true;
    return static_cast<bool>(write_all(stream == 2 ? io_.stderr_fd : io_.stdout_fd, payload));
  }

  const ExecStreamIo& io_;
  stdcopy::Demuxer demuxer_;
};

void dispatch_signals(const ExecStreamIo& io) {
  signalfd_siginfo info{};
  while (::read(io.signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (io.on_signal) io.on_signal(static_cast<int>(info.ssi_signo));
  }
}

}  // namespace

Result<StreamEnd> pump_exec_stream(const ExecStreamIo& io) {
  InputSide input(io.stdin_fd, io.socket);
  OutputSide output(io);
  if (!io.already_read.empty() && !output.write(io.already_read)) return StreamEnd::kOutputClosed;
  for (;;) {
    pollfd fds[3] = {{.fd = io.socket, .events = POLLIN, .revents = 0},
                     {.fd = input.wants_input() ? io.stdin_fd : -1, .events = POLLIN, .revents = 0},
                     {.fd = io.signal_fd, .events = POLLIN, .revents = 0}};
    if (input.wants_socket_write()) fds[0].events |= POLLOUT;
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("poll");
    }
    if (fds[2].revents != 0) dispatch_signals(io);
    if (fds[1].revents != 0) input.read_stdin();
    if ((fds[0].revents & POLLOUT) != 0) input.write_socket();
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char buffer[kChunk];
      ssize_t got = ::recv(io.socket, buffer, sizeof buffer, MSG_DONTWAIT);
      if (got < 0 && would_block(errno)) continue;
      if (got <= 0) return StreamEnd::kClosed;  // EOF, or a reset: either way the stream is over
      if (!output.write(std::string_view(buffer, static_cast<size_t>(got)))) return StreamEnd::kOutputClosed;
    }
  }
}

}  // namespace kiln::cli

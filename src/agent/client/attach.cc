#include "agent/client/attach.h"

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

namespace kiln::agent {

namespace {

constexpr size_t kStdinChunk = size_t{64} * 1024;
// Local writes go in PIPE_BUF pieces while poll says writable: a pipe or socket that reported POLLOUT takes
// that much without blocking, so a slow local reader never blocks the loop (and signal forwarding).
constexpr size_t kLocalWriteChunk = PIPE_BUF;
constexpr size_t kLocalWriteBudget = size_t{256} * 1024;

// One remote output stream copied to a local fd.
class OutputPump {
 public:
  OutputPump(AgentConnection& connection, ProcessId id, OutputStream stream, int fd)
      : connection_(connection), id_(id), stream_(stream), fd_(fd) {}

  bool has_pending() const { return !connection_.pending_output(id_, stream_).empty(); }
  // Whether poll should watch the local fd for POLLOUT.
  bool wants_poll() const { return fd_ >= 0 && has_pending(); }
  int fd() const { return fd_; }
  // True once, after a write failed with EPIPE.
  bool take_reader_gone() { return std::exchange(reader_gone_, false); }

  // Writes what the fd takes now. With no fd (or after a local write error) output is consumed and dropped,
  // so the remote process is never stalled by a reader that went away.
  void write_some() {
    size_t written = 0;
    while (written < kLocalWriteBudget) {
      std::string_view pending = connection_.pending_output(id_, stream_);
      if (pending.empty()) return;
      if (fd_ < 0) {
        connection_.consume_output(id_, stream_, pending.size());
        continue;
      }
      ssize_t n = ::write(fd_, pending.data(), std::min(pending.size(), kLocalWriteChunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        // EPIPE and friends: the local reader is gone. On EPIPE the process learns it as a local one would.
        if (n < 0 && errno == EPIPE) reader_gone_ = true;
        fd_ = -1;
        continue;
      }
      connection_.consume_output(id_, stream_, static_cast<size_t>(n));
      written += static_cast<size_t>(n);
      pollfd more{fd_, POLLOUT, 0};
      if (::poll(&more, 1, 0) != 1 || !(more.revents & POLLOUT)) return;
    }
  }

 private:
  AgentConnection& connection_;
  ProcessId id_;
  OutputStream stream_;
  int fd_;
  bool reader_gone_ = false;
};

// A process whose local reader went away: SIGPIPE at once, SIGKILL after kReaderGoneGrace if it is still
// there (a process ignoring SIGPIPE would otherwise write into the void for ever).
class ReaderGone {
 public:
  using Clock = std::chrono::steady_clock;

  Result<void> start(AgentConnection& connection, ProcessId id) {
    if (since_) return ok();
    since_ = Clock::now();
    return connection.send_signal(id, SIGPIPE);
  }
  // The poll timeout until the escalation is due; -1 when nothing is pending.
  int poll_timeout_ms() const {
    if (!since_ || killed_) return -1;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*since_ + kReaderGoneGrace - Clock::now());
    return static_cast<int>(std::max<int64_t>(left.count(), 0));
  }
  Result<void> escalate_if_due(AgentConnection& connection, ProcessId id) {
    if (!since_ || killed_ || poll_timeout_ms() > 0) return ok();
    killed_ = true;
    return connection.send_signal(id, SIGKILL);
  }

 private:
  std::optional<Clock::time_point> since_;
  bool killed_ = false;
};

// Reads local stdin only while the remote stdin has credit, so a slow process slows the local writer.
Result<void> forward_stdin(AgentConnection& connection, ProcessId id, int& stdin_fd) {
  size_t budget = std::min(connection.stdin_credit(id), kStdinChunk);
  if (budget == 0) return ok();
  char buffer[kStdinChunk];
  ssize_t n = ::read(stdin_fd, buffer, budget);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return ok();
  if (n <= 0) {
    // EOF, or a read error (EIO from a terminal that went away): either way the process sees EOF.
    stdin_fd = -1;
    return connection.close_stdin(id);
  }
  size_t taken = KILN_TRY(connection.write_stdin(id, std::string_view(buffer, static_cast<size_t>(n))));
  if (taken != static_cast<size_t>(n)) return Error::internal("stdin credit shrank during a write");
  return ok();
}

Result<void> forward_signals(AgentConnection& connection, ProcessId id, const AttachOptions& options) {
  signalfd_siginfo info;
  for (;;) {
    ssize_t n = ::read(options.signal_fd, &info, sizeof info);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return ok();
    if (n != static_cast<ssize_t>(sizeof info)) return Error::last_os_error("read signalfd");
    int signum = static_cast<int>(info.ssi_signo);
    if (signum == SIGWINCH) {
      winsize size{};
      if (options.tty_fd >= 0 && ::ioctl(options.tty_fd, TIOCGWINSZ, &size) == 0) {
        KILN_TRY(connection.resize(id, TtySize{size.ws_row, size.ws_col}));
      }
    } else if (signum == SIGINT || signum == SIGTERM || signum == SIGHUP || signum == SIGQUIT) {
      KILN_TRY(connection.send_signal(id, signum));
    }
    // A signalfd that is not non-blocking would block on the next read: one signal per readiness is enough.
    pollfd more{options.signal_fd, POLLIN, 0};
    if (::poll(&more, 1, 0) != 1) return ok();
  }
}

}  // namespace

Result<ExitStatus> attach_process(AgentConnection& connection, ProcessId id, const AttachOptions& options) {
  struct ReleaseOnExit {
    AgentConnection& connection;
    ProcessId id;
    ~ReleaseOnExit() { connection.release(id); }
  } release{connection, id};

  int stdin_fd = options.stdin_fd;
  if (stdin_fd < 0) KILN_TRY(connection.close_stdin(id));
  OutputPump outputs[2] = {OutputPump(connection, id, OutputStream::kStdout, options.stdout_fd),
                           OutputPump(connection, id, OutputStream::kStderr, options.stderr_fd)};
  ReaderGone reader_gone;
  for (;;) {
    if (auto error = connection.process_error(id)) return *error;
    for (auto& output : outputs) {
      if (output.fd() < 0) output.write_some();  // discarding needs no poll
      if (output.take_reader_gone() && !connection.exit_status(id))
        KILN_TRY(reader_gone.start(connection, id));
    }
    if (!connection.exit_status(id)) KILN_TRY(reader_gone.escalate_if_due(connection, id));
    if (connection.exit_status(id) && !outputs[0].has_pending() && !outputs[1].has_pending()) {
      return *connection.exit_status(id);
    }

    enum Slot { kChannel, kStdin, kStdout, kStderr, kSignals, kSlots };
    pollfd fds[kSlots] = {{connection.fd(), connection.poll_events(), 0},
                          {-1, POLLIN, 0},
                          {-1, POLLOUT, 0},
                          {-1, POLLOUT, 0},
                          {-1, POLLIN, 0}};
    bool exited = connection.exit_status(id).has_value();
    if (stdin_fd >= 0 && !exited && connection.stdin_credit(id) > 0) fds[kStdin].fd = stdin_fd;
    if (outputs[0].wants_poll()) fds[kStdout].fd = outputs[0].fd();
    if (outputs[1].wants_poll()) fds[kStderr].fd = outputs[1].fd();
    if (options.signal_fd >= 0) fds[kSignals].fd = options.signal_fd;
    if (exited) fds[kChannel].fd = -1;  // nothing more to wait for from the agent: just drain locally

    if (::poll(fds, kSlots, exited ? -1 : reader_gone.poll_timeout_ms()) < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("poll");
    }
    if (fds[kChannel].revents) KILN_TRY(connection.on_ready(fds[kChannel].revents));
    if (fds[kSignals].revents) KILN_TRY(forward_signals(connection, id, options));
    if (fds[kStdin].revents) KILN_TRY(forward_stdin(connection, id, stdin_fd));
    if (fds[kStdout].revents) outputs[0].write_some();
    if (fds[kStderr].revents) outputs[1].write_some();
  }
}

int exit_code_for_start_error(const Error& error) {
  return error.category() == ErrorCategory::kNotFound ? 127 : 126;
}

}  // namespace kiln::agent

#include "agent/supervised_process.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/spawn.h"
#include "common/log.h"

namespace kiln::agent {

namespace {
constexpr size_t kReadChunk = size_t{64} * 1024;
enum FdIndex { kStdinFd = 0, kStdoutFd = 1, kStderrFd = 2 };
}  // namespace

Result<std::unique_ptr<SupervisedProcess>> SupervisedProcess::start(StreamId id, const ProcessSpec& spec,
                                                                    EventLoop& loop, Reaper& reaper,
                                                                    FrameWriter& out, pid_t join_pid) {
  SpawnedProcess spawned = KILN_TRY(spawn_process(spec, join_pid));
  std::unique_ptr<SupervisedProcess> process(new SupervisedProcess(id, spawned.pid, spec.tty, out));
  process->keep_on_disconnect_ = spec.keep_on_disconnect;
  process->reaper_ = &reaper;
  reaper.watch(spawned.pid, [raw = process.get()](ExitStatus status) { raw->on_exit(status); });
  process->stdin_fd_ = std::move(spawned.stdin_fd);
  process->stdout_fd_ = std::move(spawned.stdout_fd);
  process->stderr_fd_ = std::move(spawned.stderr_fd);
  process->stdout_.open = true;
  process->stderr_.open = !spec.tty;
  // From here the destructor kills the child if anything below fails.
  KILN_TRY(process->watch_fds(loop));
  out.push(MessageType::kStarted, id, encode(ProcessStarted{spawned.pid}));
  log::debug("process started", {{"id", id},
                                 {"pid", spawned.pid},
                                 {"argv0", spec.builtin ? "builtin " + spec.builtin->name : spec.argv[0]}});
  return process;
}

SupervisedProcess::~SupervisedProcess() {
  if (reaper_) reaper_->forget(pid_);
  // After a reap the pid may belong to someone else: only a process not yet reaped is killed.
  if (!status_ && pid_ > 0) {
    (void)::kill(-pid_, SIGKILL);  // its process group (setsid made it the leader)
    (void)::kill(pid_, SIGKILL);
  }
}

Result<void> SupervisedProcess::watch_fds(EventLoop& loop) {
  auto handler = [this](int which) {
    return [this, which](uint32_t events) { return on_fd_ready(which, events); };
  };
  stdout_watch_ = KILN_TRY(loop.watch(stdout_fd_.get(), 0, handler(kStdoutFd)));
  if (!tty_) {
    stdin_watch_ = KILN_TRY(loop.watch(stdin_fd_.get(), 0, handler(kStdinFd)));
    stderr_watch_ = KILN_TRY(loop.watch(stderr_fd_.get(), 0, handler(kStderrFd)));
  }
  update_interest();
  return ok();
}

int SupervisedProcess::output_fd(const Output& output) const {
  return output.channel == DataChannel::kStdout ? stdout_fd_.get() : stderr_fd_.get();
}

Result<void> SupervisedProcess::on_fd_ready(int which, uint32_t events) {
  constexpr uint32_t kReadable = EPOLLIN | EPOLLHUP | EPOLLERR;
  constexpr uint32_t kWritable = EPOLLOUT | EPOLLHUP | EPOLLERR;
  bool stdin_here = (which == kStdinFd) || (tty_ && which == kStdoutFd);
  if (stdin_here && (events & kWritable) && !stdin_pending_.empty()) write_stdin();
  if (which != kStdinFd && (events & kReadable)) {
    Output& output = which == kStdoutFd ? stdout_ : stderr_;
    if (output.open) {
      ReadResult result = read_output(output, output_fd(output));
      if (result == ReadResult::kWouldBlock && status_) output.open = false;  // drained after exit
    }
  }
  update_interest();
  maybe_finish();
  return ok();
}

SupervisedProcess::ReadResult SupervisedProcess::read_output(Output& output, int fd) {
  size_t budget = std::min<size_t>(output.window.available(), kReadChunk);
  if (budget == 0) return ReadResult::kNoCredit;
  char buffer[kReadChunk];
  ssize_t n;
  do {
    n = ::read(fd, buffer, budget);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    output.window.consume(static_cast<size_t>(n));
    std::string_view data(buffer, static_cast<size_t>(n));
    if (keep_on_disconnect_) replay_[output.channel == DataChannel::kStdout ? 0 : 1].record(data);
    out_->push(output.frame_type, id_, data);
    return ReadResult::kData;
  }
  if (n < 0 && errno == EAGAIN) return ReadResult::kWouldBlock;
  // EOF, or EIO from a pty master whose slave side is closed everywhere.
  output.open = false;
  return ReadResult::kClosed;
}

void SupervisedProcess::on_stdin(std::string_view data) {
  if (auto received = stdin_window_.on_received(data.size()); !received) {
    report_error(received.error().with_context("stdin"));
    return;
  }
  if (!stdin_open_ || stdin_close_requested_) {
    // Nobody will read it: consume at once so the host's window does not leak.
    if (uint32_t grant = stdin_window_.on_consumed(data.size())) {
      out_->push(MessageType::kCredit, id_, encode(CreditGrant{DataChannel::kStdin, grant}));
    }
    return;
  }
  stdin_pending_.append(data);
  write_stdin();
  update_interest();
}

void SupervisedProcess::write_stdin() {
  size_t consumed = 0;
  while (!stdin_pending_.empty()) {
    ssize_t n = ::write(stdin_fd(), stdin_pending_.data(), stdin_pending_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      // EPIPE (the process closed its stdin) or EIO (pty gone): the rest can never be delivered.
      consumed += stdin_pending_.size();
      stdin_pending_.clear();
      stdin_open_ = false;
      break;
    }
    consumed += static_cast<size_t>(n);
    stdin_pending_.erase(0, static_cast<size_t>(n));
  }
  // Bytes a previous host sent are delivered but not credited: the new host never spent window on them.
  size_t uncredited = std::min(consumed, stdin_uncredited_);
  stdin_uncredited_ -= uncredited;
  consumed -= uncredited;
  if (consumed > 0) {
    if (uint32_t grant = stdin_window_.on_consumed(consumed)) {
      out_->push(MessageType::kCredit, id_, encode(CreditGrant{DataChannel::kStdin, grant}));
    }
  }
  if (stdin_pending_.empty() && (stdin_close_requested_ || !stdin_open_)) finish_stdin();
}

void SupervisedProcess::on_close_stdin() {
  if (stdin_close_requested_) return;
  stdin_close_requested_ = true;
  if (stdin_pending_.empty()) finish_stdin();
  update_interest();
}

// Ends stdin once everything queued is written. A pipe is closed; a pty cannot be (that would hang up the
// terminal), so it gets the terminal's EOF character instead, as typing Ctrl-D would.
void SupervisedProcess::finish_stdin() {
  if (tty_) {
    if (stdin_open_ && stdin_close_requested_ && !status_) {
      char eof = '\x04';
      (void)!::write(stdout_fd_.get(), &eof, 1);
    }
  } else {
    stdin_watch_.reset();
    stdin_fd_.reset();
  }
  stdin_open_ = false;
}

void SupervisedProcess::on_signal(int signum) {
  if (status_) return;  // reaped: the pid may already name another process
  pid_t target = pid_;
  if (tty_) {
    // Like a terminal's Ctrl-C: the foreground process group, which may be a job the shell started.
    pid_t group = ::tcgetpgrp(stdout_fd_.get());
    if (group > 0) target = -group;
  }
  if (::kill(target, signum) != 0 && errno != ESRCH) {
    report_error(Error::last_os_error(fmt::format("kill {} {}", target, signum)));
  }
}

void SupervisedProcess::on_resize(TtySize size) {
  if (!tty_) return;  // docker accepts resizes for non-tty execs and ignores them too
  winsize window{};
  window.ws_row = size.rows;
  window.ws_col = size.cols;
  if (::ioctl(stdout_fd_.get(), TIOCSWINSZ, &window) != 0) report_error(Error::last_os_error("TIOCSWINSZ"));
}

void SupervisedProcess::on_credit(const CreditGrant& grant) {
  Output* output = grant.channel == DataChannel::kStdout   ? &stdout_
                   : grant.channel == DataChannel::kStderr ? &stderr_
                                                           : nullptr;
  if (!output) {
    report_error(Error::protocol("CREDIT for stdin sent to the agent"));
    return;
  }
  if (auto granted = output->window.grant(grant.bytes); !granted) {
    report_error(granted.error().with_context(std::string(to_string(grant.channel))));
    return;
  }
  if (status_) drain_after_exit();
  update_interest();
  maybe_finish();
}

void SupervisedProcess::on_exit(ExitStatus status) {
  status_ = status;
  log::debug("process exited", {{"id", id_}, {"pid", pid_}, {"status", status.describe()}});
  stdin_pending_.clear();
  if (!tty_) {
    stdin_watch_.reset();
    stdin_fd_.reset();
  }
  stdin_open_ = false;
  drain_after_exit();
  update_interest();
  maybe_finish();
}

// The process is gone, so everything it wrote is already in the pipe (or, for a pty, flushed to the master
// by the read itself): read until empty. Output a background child writes later is not forwarded.
void SupervisedProcess::drain_after_exit() {
  for (Output* output : {&stdout_, &stderr_}) {
    while (output->open) {
      ReadResult result = read_output(*output, output_fd(*output));
      if (result == ReadResult::kWouldBlock) output->open = false;
      if (result != ReadResult::kData) break;
    }
  }
}

void SupervisedProcess::update_interest() {
  if (finished_) return;
  auto wants_read = [](const Output& output) { return output.open && output.window.available() > 0; };
  uint32_t stdout_events = wants_read(stdout_) ? kEventIn : 0u;
  bool wants_write = !stdin_pending_.empty();
  if (tty_ && wants_write) stdout_events |= kEventOut;
  // A failure here means the fd was closed under us: an agent bug; the process keeps what it has.
  auto check = [this](Result<void> result) {
    if (!result) log::error("epoll update failed", {{"id", id_}, {"error", result.error().message()}});
  };
  if (stdout_watch_.active()) check(stdout_watch_.set_events(stdout_events));
  if (stderr_watch_.active()) check(stderr_watch_.set_events(wants_read(stderr_) ? kEventIn : 0u));
  if (stdin_watch_.active()) check(stdin_watch_.set_events(wants_write ? kEventOut : 0u));
}

void SupervisedProcess::maybe_finish() {
  if (finished_ || !status_ || stdout_.open || stderr_.open) return;
  finished_ = true;
  stdin_watch_.reset();
  stdout_watch_.reset();
  stderr_watch_.reset();
  stdin_fd_.reset();
  stdout_fd_.reset();
  stderr_fd_.reset();
  out_->push(MessageType::kExit, id_, encode(*status_));
}

void SupervisedProcess::redirect(FrameWriter& out) {
  out_ = &out;
}

void SupervisedProcess::reattach(FrameWriter& out, size_t held_stdout, size_t held_stderr) {
  out_ = &out;
  // The new host's windows start full; what was held for it already counts against them.
  stdout_.window = SendWindow();
  stdout_.window.consume(held_stdout);
  stderr_.window = SendWindow();
  stderr_.window.consume(held_stderr);
  stdin_window_ = ReceiveWindow();
  stdin_uncredited_ = stdin_pending_.size();
  update_interest();
}

void SupervisedProcess::report_error(const Error& error) {
  log::warn("process error", {{"id", id_}, {"error", error.message()}});
  out_->push(MessageType::kError, id_, encode(ErrorReply{error.category(), error.message()}));
}

}  // namespace kiln::agent

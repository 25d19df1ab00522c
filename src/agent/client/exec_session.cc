#include "agent/client/exec_session.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "common/stdcopy.h"

namespace kiln::agent::detail {

namespace {

constexpr size_t kStdinChunk = size_t{64} * 1024;
// Docker's own stdcopy writer emits frames of at most 32 KiB; anything a uint32 holds is valid, and bigger
// frames only mean fewer headers.
constexpr size_t kMaxFramePayload = size_t{64} * 1024;
// Per session and loop turn, so one fast client cannot starve the others.
constexpr size_t kWriteBudget = size_t{256} * 1024;
// Unread client input at close is discarded first: closing a TCP socket with unread data sends a reset,
// which can make the client lose output it has not read yet.
constexpr size_t kDrainLimit = size_t{1024} * 1024;

Error lost_connection() {
  return Error::unavailable("lost connection to the VM's agent");
}

}  // namespace

void ExecState::finish(Result<ExitStatus> outcome) {
  std::lock_guard lock(mutex_);
  if (outcome_) return;
  outcome_ = std::move(outcome);
  changed_.notify_all();
}

Result<ExitStatus> ExecState::wait(std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock lock(mutex_);
  auto done = [this] { return outcome_.has_value(); };
  if (!timeout) {
    changed_.wait(lock, done);
  } else if (!changed_.wait_for(lock, *timeout, done)) {
    return Error::timeout(fmt::format("the process did not exit within {} ms", timeout->count()));
  }
  return *outcome_;
}

std::optional<ExitStatus> ExecState::exit_status() const {
  std::lock_guard lock(mutex_);
  if (!outcome_ || !outcome_->has_value()) return std::nullopt;
  return outcome_->value();
}

Result<void> ExecSession::validate(const ProcessSpec& spec, const ExecIo& io) {
  if (io.tty != spec.tty)
    return Error::invalid_argument("exec: the stream's tty mode must match the process's");
  if (!io.client) return ok();
  struct stat info {};
  if (::fstat(io.client.get(), &info) != 0) return Error::last_os_error("exec: client fd");
  // send(MSG_NOSIGNAL) and shutdown() need a socket; a pipe would raise SIGPIPE in the daemon.
  if (!S_ISSOCK(info.st_mode)) return Error::invalid_argument("exec: the client must be a stream socket");
  return ok();
}

std::unique_ptr<ExecSession> ExecSession::create(AgentConnection& connection, ProcessId id, ExecIo io,
                                                 std::shared_ptr<ExecState> state) {
  return std::unique_ptr<ExecSession>(new ExecSession(connection, id, std::move(io), std::move(state)));
}

ExecSession::ExecSession(AgentConnection& connection, ProcessId id, ExecIo io,
                         std::shared_ptr<ExecState> state)
    : connection_(connection),
      id_(id),
      client_(std::move(io.client)),
      tty_(io.tty),
      attach_stdin_(io.attach_stdin),
      attach_stdout_(io.attach_stdout),
      attach_stderr_(io.attach_stderr),
      state_(std::move(state)) {
  if (client_ && attach_stdin_) {
    input_ = std::move(io.already_read_input);
  } else {
    client_eof_ = true;  // nothing will ever be read: the first advance() closes stdin
  }
}

ExecSession::~ExecSession() {
  if (!finished_) abandon(lost_connection());
}

bool ExecSession::attached(OutputStream stream) const {
  return client_ && (stream == OutputStream::kStdout ? attach_stdout_ : attach_stderr_);
}

bool ExecSession::frame_in_progress() const {
  return header_written_ < sizeof frame_header_ || frame_left_ > 0;
}

bool ExecSession::has_output_for_client() const {
  if (!client_) return false;
  if (frame_in_progress()) return true;
  for (OutputStream stream : {OutputStream::kStdout, OutputStream::kStderr}) {
    if (attached(stream) && !connection_.pending_output(id_, stream).empty()) return true;
  }
  return false;
}

bool ExecSession::wants_stdin() const {
  return client_ && stdin_open_ && !client_eof_ && input_.empty() && !connection_.exit_status(id_) &&
         connection_.stdin_credit(id_) > 0;
}

short ExecSession::poll_events() const {
  short events = 0;
  if (wants_stdin()) events |= POLLIN;
  if (has_output_for_client()) events |= POLLOUT;
  return events;
}

void ExecSession::on_client_ready(short revents) {
  if (!client_) return;
  if (revents & (POLLHUP | POLLERR)) {
    // A hangup is the peer closing both directions (a half-close, as `docker exec -i` sends after its
    // stdin ends, is POLLIN with EOF): nobody reads the output any more.
    client_gone();
    return;
  }
  if (revents & POLLOUT) client_writable_ = true;
  if ((revents & POLLIN) && wants_stdin()) read_stdin();
}

void ExecSession::read_stdin() {
  char buffer[kStdinChunk];
  // Never more than the credit, so the bytes read can always be queued at once: a slow process stops this
  // read, and the client's own socket buffer pushes back on it.
  size_t budget = std::min(connection_.stdin_credit(id_), sizeof buffer);
  ssize_t n = ::recv(client_.get(), buffer, budget, MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) client_gone();
    return;
  }
  if (n == 0) {
    client_eof_ = true;
    return;
  }
  input_.append(buffer, static_cast<size_t>(n));
}

Result<void> ExecSession::forward_input() {
  if (!stdin_open_) return ok();
  if (!input_.empty()) {
    size_t taken = KILN_TRY(connection_.write_stdin(id_, input_));
    input_.erase(0, taken);
  }
  if (input_.empty() && client_eof_) {
    KILN_TRY(connection_.close_stdin(id_));
    stdin_open_ = false;
  }
  return ok();
}

void ExecSession::drop_unattached_output() {
  for (OutputStream stream : {OutputStream::kStdout, OutputStream::kStderr}) {
    if (attached(stream)) continue;
    // Consumed anyway, so a process whose output nobody wants never stalls on credit.
    connection_.consume_output(id_, stream, connection_.pending_output(id_, stream).size());
  }
}

void ExecSession::write_output() {
  drop_unattached_output();
  size_t written_before = bytes_written_;
  while (client_ && client_writable_ && bytes_written_ - written_before < kWriteBudget) {
    if (!frame_in_progress()) {
      std::optional<OutputStream> next;
      for (OutputStream stream : {OutputStream::kStdout, OutputStream::kStderr}) {
        if (!next && attached(stream) && !connection_.pending_output(id_, stream).empty()) next = stream;
      }
      if (!next) return;
      size_t pending = connection_.pending_output(id_, *next).size();
      frame_stream_ = *next;
      if (tty_) {
        frame_left_ = pending;  // a tty's output is raw, as the terminal would see it
      } else {
        frame_left_ = std::min(pending, kMaxFramePayload);
        stdcopy::encode_header(*next == OutputStream::kStdout ? stdcopy::kStdout : stdcopy::kStderr,
                               static_cast<uint32_t>(frame_left_), frame_header_);
        header_written_ = 0;
      }
    }
    if (!write_frame()) return;
  }
  drop_unattached_output();  // the client may have gone during the writes
}

bool ExecSession::write_frame() {
  std::string_view payload = connection_.pending_output(id_, frame_stream_).substr(0, frame_left_);
  iovec parts[2];
  int count = 0;
  size_t header_left = sizeof frame_header_ - header_written_;
  if (header_left > 0) parts[count++] = {frame_header_ + header_written_, header_left};
  if (!payload.empty()) parts[count++] = {const_cast<char*>(payload.data()), payload.size()};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = static_cast<size_t>(count);
  // MSG_NOSIGNAL: a client that went away is an EPIPE here, never a SIGPIPE for the daemon.
  ssize_t n = ::sendmsg(client_.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EINTR) return true;
    if (errno == EAGAIN) {
      client_writable_ = false;
    } else {
      client_gone();
    }
    return false;
  }
  size_t sent = static_cast<size_t>(n);
  size_t header_part = std::min(sent, header_left);
  header_written_ += header_part;
  size_t payload_part = sent - header_part;
  frame_left_ -= payload_part;
  bytes_written_ += sent;
  // Credit goes back to the agent only now that the client took the bytes.
  connection_.consume_output(id_, frame_stream_, payload_part);
  return true;
}

void ExecSession::client_gone() {
  log::debug("exec client went away; killing the process", {{"process", id_}});
  // As docker does when an attached client disconnects mid-stream: nobody is left to see the output.
  if (!connection_.exit_status(id_)) (void)connection_.send_signal(id_, SIGKILL);
  client_.reset();
  header_written_ = sizeof frame_header_;
  frame_left_ = 0;
  input_.clear();
  client_eof_ = true;
}

void ExecSession::close_client() {
  if (!client_) return;
  ::shutdown(client_.get(), SHUT_WR);
  char discard[4096];
  for (size_t drained = 0; drained < kDrainLimit;) {
    ssize_t n = ::recv(client_.get(), discard, sizeof discard, MSG_DONTWAIT);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
  client_.reset();
}

Result<void> ExecSession::advance() {
  if (finished_) return ok();
  if (auto error = connection_.process_error(id_)) {
    finish(*error);
    return ok();
  }
  KILN_TRY(forward_input());
  write_output();
  std::optional<ExitStatus> exit = connection_.exit_status(id_);
  // EXIT follows all of the process's output, so once it is here and written out, the stream is complete.
  if (exit && !has_output_for_client()) finish(*exit);
  return ok();
}

void ExecSession::finish(Result<ExitStatus> outcome) {
  close_client();
  connection_.release(id_);
  finished_ = true;
  state_->finish(std::move(outcome));  // last: a waiter that wakes up finds the client closed
}

void ExecSession::abandon(const Error& why) {
  close_client();
  finished_ = true;
  state_->finish(why);
}

}  // namespace kiln::agent::detail

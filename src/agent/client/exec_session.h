// ExecSession: one AgentHub exec bridged to its client socket: client bytes to the process's stdin within
// its credit, the process's output to the client (raw with a tty, Docker stdcopy frames without), credit
// granted back only as the client takes bytes, so a slow client slows the guest process and nothing here
// buffers more than the connection's per-stream window. ExecState is what the session shares with its
// ExecHandles.
// Threading: ExecSession lives on the hub thread only. ExecState is guarded by its mutex; the hub thread
// finishes it once, any thread waits on it.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent/client/agent_connection.h"
#include "agent/client/agent_hub.h"

namespace kiln::agent::detail {

struct ExecState {
  // Records how the session ended (first call wins) and wakes the waiters.
  void finish(Result<ExitStatus> outcome);
  // nullopt timeout: wait forever.
  Result<ExitStatus> wait(std::optional<std::chrono::milliseconds> timeout);
  std::optional<ExitStatus> exit_status() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<Result<ExitStatus>> outcome_;
};

class ExecSession {
 public:
  // Checked before the process starts: `io.client` must be a stream socket (or invalid: detached), and the
  // framing must match the process's tty mode.
  static Result<void> validate(const ProcessSpec& spec, const ExecIo& io);
  // For a started process. Without an attached stdin, the first advance() closes the process's stdin.
  static std::unique_ptr<ExecSession> create(AgentConnection& connection, ProcessId id, ExecIo io,
                                             std::shared_ptr<ExecState> state);
  ~ExecSession();
  ExecSession(const ExecSession&) = delete;
  ExecSession& operator=(const ExecSession&) = delete;

  ProcessId id() const { return id_; }
  // The client fd to poll (-1: none) and for what; POLLHUP/POLLERR are always reported.
  int client_fd() const { return client_.get(); }
  short poll_events() const;
  void on_client_ready(short revents);
  // Moves whatever can move without blocking: leftover stdin, output to the client (or dropped), and
  // finishes the session once the process exited and its output is out. An error means the connection is
  // unusable; the caller then ends every session.
  Result<void> advance();
  bool finished() const { return finished_; }
  // Ends the session without an exit status (the channel is gone or the hub stops).
  void abandon(const Error& why);

 private:
  ExecSession(AgentConnection& connection, ProcessId id, ExecIo io, std::shared_ptr<ExecState> state);

  bool attached(OutputStream stream) const;
  bool frame_in_progress() const;
  bool has_output_for_client() const;
  bool wants_stdin() const;
  void read_stdin();
  Result<void> forward_input();
  void write_output();
  // Writes (part of) the current stdcopy frame or raw chunk; false when the client cannot take more now.
  bool write_frame();
  void drop_unattached_output();
  void finish(Result<ExitStatus> outcome);
  // The client went away (EPIPE, ECONNRESET, hangup): stop sending and kill the process, as docker does.
  void client_gone();
  void close_client();

  AgentConnection& connection_;
  ProcessId id_;
  UniqueFd client_;
  bool tty_;
  bool attach_stdin_;
  bool attach_stdout_;
  bool attach_stderr_;
  std::shared_ptr<ExecState> state_;

  std::string input_;        // client bytes not yet taken by the process's stdin (already_read_input)
  bool client_eof_ = false;  // the client's write side is done; stdin is closed once input_ is out
  bool stdin_open_ = true;
  bool client_writable_ = true;  // false after EAGAIN until poll reports POLLOUT

  // The stdcopy frame being written: its header, how much of it is out, and its payload still to write.
  // Payload bytes stay in the connection's pending output until written, so credit tracks the client.
  OutputStream frame_stream_ = OutputStream::kStdout;
  char frame_header_[8] = {};
  size_t header_written_ = 8;
  size_t frame_left_ = 0;
  size_t bytes_written_ = 0;

  bool finished_ = false;
};

}  // namespace kiln::agent::detail

// SupervisedProcess: one workload process the host asked for, and the agent side of its streams. It reads
// the process's stdout/stderr (or pty) only while the host has granted credit, so a stalled host stops the
// process through the pipe (back-pressure); it buffers at most one window of stdin; it sends EXIT only once
// the process is reaped *and* its output is drained. Owned by the Session; agent thread only.
#pragma once

#include <sys/types.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/event_loop.h"
#include "agent/output_replay.h"
#include "agent/protocol/flow_control.h"
#include "agent/protocol/frame_writer.h"
#include "agent/protocol/messages.h"
#include "agent/reaper.h"
#include "common/child_process.h"
#include "common/unique_fd.h"

namespace kiln::agent {

class SupervisedProcess {
 public:
  // Spawns `spec` and sends STARTED, or returns the spawn error (the caller reports it).
  // `join_pid`: see spawn_process.
  static Result<std::unique_ptr<SupervisedProcess>> start(StreamId id, const ProcessSpec& spec,
                                                          EventLoop& loop, Reaper& reaper, FrameWriter& out,
                                                          pid_t join_pid = 0);
  SupervisedProcess(const SupervisedProcess&) = delete;
  SupervisedProcess& operator=(const SupervisedProcess&) = delete;
  // SIGKILLs the process group of a process that has not exited.
  ~SupervisedProcess();

  // Host requests. Misuse (window overrun, resize without a tty) is reported to the host as an ERROR frame
  // on this process's stream; none of these fail the connection.
  void on_stdin(std::string_view data);
  void on_close_stdin();
  void on_signal(int signum);
  void on_resize(TtySize size);
  void on_credit(const CreditGrant& grant);

  // While the host is away (keep_on_disconnect), frames go to `out` (the session's holding writer for this
  // process) instead of the channel's.
  void redirect(FrameWriter& out);
  // A new host took the process over: frames go to `out` again, and the flow-control windows restart as
  // the new host's, less the `held_*` output bytes already queued for it.
  void reattach(FrameWriter& out, size_t held_stdout, size_t held_stderr);
  bool keep_on_disconnect() const { return keep_on_disconnect_; }
  // A kept process's recent output, stdout [0] and stderr [1] (empty for other processes).
  const std::array<OutputReplay, 2>& replay() const { return replay_; }

  // EXIT has been queued; the Session may destroy this object.
  bool finished() const { return finished_; }
  pid_t pid() const { return pid_; }

 private:
  // One output stream of the process: its fd (pipe, or the pty master shared with stdin) and its window.
  struct Output {
    DataChannel channel;
    MessageType frame_type;
    bool open = false;
    SendWindow window;
  };
  enum class ReadResult { kData, kWouldBlock, kClosed, kNoCredit };

  SupervisedProcess(StreamId id, pid_t pid, bool tty, FrameWriter& out)
      : id_(id), pid_(pid), tty_(tty), out_(&out) {}
  Result<void> watch_fds(EventLoop& loop);
  Result<void> on_fd_ready(int which, uint32_t events);
  ReadResult read_output(Output& output, int fd);
  void write_stdin();
  void finish_stdin();
  void on_exit(ExitStatus status);
  void drain_after_exit();
  void update_interest();
  void maybe_finish();
  void report_error(const Error& error);
  int output_fd(const Output& output) const;
  int stdin_fd() const { return tty_ ? stdout_fd_.get() : stdin_fd_.get(); }

  StreamId id_;
  pid_t pid_;
  bool tty_;
  FrameWriter* out_;  // the channel's writer, or the session's holding writer while the host is away
  bool keep_on_disconnect_ = false;
  std::array<OutputReplay, 2> replay_;
  Reaper* reaper_ = nullptr;

  // fds before watches: members die in reverse order, so each watch unregisters before its fd closes.
  UniqueFd stdin_fd_;   // pipe; unused with a tty
  UniqueFd stdout_fd_;  // pipe, or the pty master (also stdin with a tty)
  UniqueFd stderr_fd_;  // pipe; unused with a tty
  Watch stdin_watch_, stdout_watch_, stderr_watch_;

  Output stdout_{DataChannel::kStdout, MessageType::kStdout};
  Output stderr_{DataChannel::kStderr, MessageType::kStderr};

  ReceiveWindow stdin_window_;
  size_t stdin_uncredited_ = 0;  // pending bytes from a previous host, delivered without a grant
  std::string stdin_pending_;
  bool stdin_open_ = true;  // the process can still receive stdin
  bool stdin_close_requested_ = false;

  std::optional<ExitStatus> status_;
  bool finished_ = false;
};

}  // namespace kiln::agent

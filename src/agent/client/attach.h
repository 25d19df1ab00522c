// attach_process: runs the host side of one remote process to completion, like `docker run`'s attach: local
// stdin to the process, its stdout/stderr to local fds (credit is granted back only as the local writes
// succeed, so a slow local reader slows the guest process instead of growing host memory), signals from a
// caller's signalfd forwarded, and the exit status returned. Runs on the caller's thread, blocking.
#pragma once

#include <chrono>

#include "agent/client/agent_connection.h"
#include "common/child_process.h"
#include "common/error.h"

namespace kiln::agent {

inline constexpr std::chrono::seconds kReaderGoneGrace{2};

struct AttachOptions {
  int stdin_fd =
      -1;  // forwarded until EOF, then the remote stdin is closed; -1: closed at once (docker run without -i)
  // -1: output is discarded (still consumed, so the process never stalls). When the local reader goes away
  // (EPIPE, as in `kiln vm run -- yes | head -1`), the process gets SIGPIPE, as a local writer to that pipe
  // would, then SIGKILL if it outlives kReaderGoneGrace (it ignores SIGPIPE); its further output is dropped.
  int stdout_fd = -1;
  int stderr_fd = -1;  // with a tty the remote side has no separate stderr
  // A signalfd the caller created (with those signals blocked). SIGINT, SIGTERM, SIGHUP and SIGQUIT are
  // forwarded to the process; SIGWINCH sends the size of `tty_fd`. -1: nothing is forwarded.
  int signal_fd = -1;
  int tty_fd = -1;  // the local terminal whose size SIGWINCH reports; -1: none
};

// Pumps until the process exits and its output is written locally; then releases the process id. Errors:
// kUnavailable "lost connection to the VM's agent" if the channel closes first; an error the agent reported
// for the process; local I/O errors on the signal fd.
Result<ExitStatus> attach_process(AgentConnection& connection, ProcessId id, const AttachOptions& options);

// The exit code a shell (and docker) uses when a command could not be started: 127 for kNotFound ("exec foo:
// No such file or directory"), 126 for any other start failure (permission denied, not executable, bad cwd).
int exit_code_for_start_error(const Error& error);

}  // namespace kiln::agent

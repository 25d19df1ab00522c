// The client end of an exec's upgraded connection (POST /v1/vms/{id}/exec): local stdin to the socket, the
// socket to local stdout/stderr, until the daemon closes the stream (the process exited and its output was
// sent). Without a tty the stream is Docker's stdcopy framing, demultiplexed here. Single-threaded: one
// poll() loop, so a slow reader on either side never deadlocks the other direction.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::cli {

struct ExecStreamIo {
  int socket = -1;
  std::string already_read;  // bytes past the HTTP head, read before the socket
  bool tty = false;          // raw stream; otherwise stdcopy frames
  int stdin_fd = -1;         // -1: stdin not attached. At its EOF the socket's write side is shut down.
  int stdout_fd = 1;
  int stderr_fd = 2;
  int signal_fd = -1;  // a signalfd; each signal goes to on_signal
  std::function<void(int signal)> on_signal;
};

enum class StreamEnd {
  kClosed,        // the daemon ended the stream
  kOutputClosed,  // our stdout/stderr went away (a closed pipe): we stopped
};

Result<StreamEnd> pump_exec_stream(const ExecStreamIo& io);

}  // namespace kiln::cli

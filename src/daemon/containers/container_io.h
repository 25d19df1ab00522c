// ContainerIo: the host side of a container's main-process stdio, kept across its runs. Output of the current
// run reaches every attached client (and the logs, through the relay's sink); input from attached clients
// goes to the process's stdin. A client may attach before the container starts (as `docker run` does); input
// that arrives before the process exists is held (bounded) and delivered at start. Thread-safe: the relay
// thread broadcasts, attach handlers (HTTP connection threads) add and remove clients and write input.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::daemon::containers {

// One attached client: a hijacked connection. Output goes out raw (tty) or in stdcopy frames.
struct AttachedClient {
  UniqueFd fd;
  bool tty = false;
  bool want_stdout = true;
  bool want_stderr = true;
  // Set when the run ended (or a write to it failed): the handler stops waiting and closes it.
  bool ended = false;
};

// Sends all of `data` on a socket (MSG_NOSIGNAL); false once the peer is gone.
bool send_all(int fd, std::string_view data);

class ContainerIo {
 public:
  void add(const std::shared_ptr<AttachedClient>& client);
  void remove(const std::shared_ptr<AttachedClient>& client);
  // Blocks until `client` was ended by end_of_run() or a failed write, or `give_up()` says so (polled).
  void wait_ended(const std::shared_ptr<AttachedClient>& client, const std::function<bool()>& give_up);

  // Output of the running process (stream: stdcopy::kStdout or kStderr) to every client that wants it. A
  // client that cannot take it (gone) is ended. Blocks while a client's socket is full: a slow reader slows
  // the container, as under dockerd, and nothing is dropped.
  void broadcast(int stream, std::string_view payload);
  // The run is over: every client's stream ends (its socket is shut down, so its handler's read returns).
  void end_of_run();

  // A run begins: `stdin_fd` (shared with the relay, which owns it) takes input; held input goes to it now.
  // -1: the process has no stdin (OpenStdin false), so input is dropped.
  void begin_run(std::shared_ptr<UniqueFd> stdin_socket, bool stdin_open);
  // Input for the process. Held (up to 1 MiB, then dropped) while no run takes it.
  void write_stdin(std::string_view bytes);
  // The process's stdin reaches EOF (StdinOnce and the attached client closed its input).
  void close_stdin();

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::shared_ptr<AttachedClient>> clients_;
  std::shared_ptr<UniqueFd> stdin_;  // the relay socket, while a run with open stdin goes on
  std::string held_input_;
  bool close_held_ = false;  // close_stdin() came before the run
};

// Detach keys as Docker parses them (--detach-keys): "ctrl-p,ctrl-q" (the default), letters, "ctrl-@" ..
// "ctrl-_", "ctrl-[" (escape). kInvalidArgument in dockerd's words otherwise.
Result<std::string> parse_detach_keys(std::string_view keys);

// Finds a detach sequence in a client's input as it arrives, holding back a partial match.
class DetachKeyScanner {
 public:
  explicit DetachKeyScanner(std::string sequence) : sequence_(std::move(sequence)) {}
  // Appends to `out` the input to pass on; true when the whole sequence was typed (input after it dropped).
  bool feed(std::string_view input, std::string& out);

 private:
  std::string sequence_;
  size_t matched_ = 0;
};

}  // namespace kiln::daemon::containers

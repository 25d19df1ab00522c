// QMP (QEMU Machine Protocol) client: JSON objects over QEMU's monitor unix socket, one per line.
// Synchronous: execute() sends a command and returns its "return" value or its "error" as an Error;
// asynchronous events that arrive meanwhile are kept for take_events(). One thread per client.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/unique_fd.h"

namespace kiln::engine::qemu {

class QmpClient {
 public:
  // Connects to `socket_path` (retrying until QEMU has created it), reads the greeting and negotiates
  // capabilities. Gives up at `timeout`, or at once when `exit_fd` (QEMU's pidfd) becomes readable.
  static Result<QmpClient> connect(const std::string& socket_path, int exit_fd,
                                   std::chrono::milliseconds timeout);
  // Wraps an already connected socket (for tests).
  static Result<QmpClient> handshake(UniqueFd fd, std::chrono::milliseconds timeout);

  Result<Json> execute(std::string_view command, const Json& arguments = nullptr,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Hands QEMU a copy of `fd` under `name` (QMP getfd: the descriptor travels as SCM_RIGHTS with the
  // command), for URIs such as "fd:<name>". QEMU consumes it when a command uses it; see closefd otherwise.
  Result<void> pass_fd(std::string_view name, int fd,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Waits for an event named `name` whose data satisfies `matches` (events already received count), and
  // returns it; other events are kept for take_events(). kUnavailable when QEMU closes the connection
  // (it exited), kTimeout at `deadline`.
  Result<Json> wait_for_event(std::string_view name, const std::function<bool(const Json& data)>& matches,
                              std::chrono::steady_clock::time_point deadline);
  std::vector<Json> take_events();
  // Reads whatever QEMU already sent (events, typically after it exited) without waiting, into take_events().
  void collect_pending_events();

 private:
  explicit QmpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<Json> read_message(std::chrono::steady_clock::time_point deadline);
  Result<Json> await_reply(std::string_view command, std::chrono::steady_clock::time_point deadline);

  UniqueFd fd_;
  std::string buffer_;
  std::vector<Json> events_;
};

}  // namespace kiln::engine::qemu

// AgentHub: the one owner of a VM's agent channel in the daemon. QEMU's chardev accepts one client, so every
// request for the VM (several streaming exec sessions, pings, shutdown, one-shot calls) shares this channel.
// Threading: one hub thread owns the AgentConnection, every session's client fd and all session state; it
// polls the agent fd, the client fds and an eventfd. Every public method (of AgentHub and ExecHandle) may be
// called from any thread except the hub thread itself: it posts a command to the hub thread and waits for
// the result. ExecHandles outlive the hub safely.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>

#include "agent/client/agent_connection.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace detail {
class HubLoop;
class HubMailbox;
struct ExecState;
}  // namespace detail

// Where an exec's stdio goes.
struct ExecIo {
  // A connected stream socket (the client's HTTP connection after the upgrade), or invalid for a detached
  // exec (`docker exec -d`): output is consumed and dropped, stdin is closed at once.
  UniqueFd client;
  // Output goes to the client raw; without a tty, in Docker's stdcopy frames (stream type, 3 zero bytes,
  // big-endian u32 length, payload), as the Docker Engine API's non-tty attach/exec streams do.
  bool tty = false;
  bool attach_stdin = false;  // false: the process's stdin is closed at once and the client is never read
  bool attach_stdout = true;  // false: that stream is consumed and dropped
  bool attach_stderr = true;
  // Bytes of the client's stdin the caller already read (past the HTTP upgrade); sent before any others.
  std::string already_read_input;
};

// A process started by AgentHub::exec. Copyable; every copy names the same process. Stays safe to use after
// the hub is gone: wait() then returns kUnavailable "lost connection to the VM's agent".
class ExecHandle {
 public:
  // The process id on the agent connection; unique for the hub's lifetime.
  ProcessId id() const { return id_; }
  // Blocks until the process exited and its output reached the client (which is then shut down and closed).
  // kUnavailable if the channel to the agent was lost first (or the hub was destroyed); kTimeout after
  // `timeout`; an error the agent reported about the process.
  Result<ExitStatus> wait() const;
  Result<ExitStatus> wait(std::chrono::milliseconds timeout) const;
  // Set once wait() would return an exit status without blocking.
  std::optional<ExitStatus> exit_status() const;
  // Signals the process (with a tty: its foreground process group). No-op once it exited.
  Result<void> signal(int signum) const;
  Result<void> resize(TtySize size) const;

 private:
  friend class detail::HubLoop;
  ExecHandle(ProcessId id, std::shared_ptr<detail::ExecState> state,
             std::shared_ptr<detail::HubMailbox> mailbox)
      : id_(id), state_(std::move(state)), mailbox_(std::move(mailbox)) {}

  ProcessId id_;
  std::shared_ptr<detail::ExecState> state_;
  std::shared_ptr<detail::HubMailbox> mailbox_;
};

class AgentHub {
 public:
  // Called once, on the hub thread, when the channel to the agent fails (closed, or a protocol error); not
  // when the hub is destroyed. By then every session's waiter has been woken with `error`. It must not
  // destroy the hub (that joins the hub thread); calls on the hub from it fail with kUnavailable.
  using LostCallback = std::function<void(const Error& error)>;

  // Does the HELLO (AgentConnection::connect, on the calling thread) and starts the hub thread.
  static Result<std::unique_ptr<AgentHub>> start(UniqueFd channel, std::chrono::milliseconds hello_timeout,
                                                 LostCallback on_lost = {});
  // Stops the hub thread, ends the sessions (their clients are closed, their waiters get kUnavailable) and
  // closes the channel, which makes the agent kill their processes.
  ~AgentHub();
  AgentHub(const AgentHub&) = delete;
  AgentHub& operator=(const AgentHub&) = delete;

  // Starts `spec` and bridges it to `io.client` (see ExecIo) until it exits. Returns once the process
  // started; a start failure is the agent's error (kNotFound: the caller's 127, other categories 126, see
  // exit_code_for_start_error) and then `io` is left untouched, so the caller can still report on its client.
  // On success `io` was moved from.
  Result<ExecHandle> exec(const ProcessSpec& spec, ExecIo&& io);
  // Takes over a process an earlier host started with keep_on_disconnect (HelloReply::kept_processes) and
  // bridges it to `io.client` from here on, its held output first (from `request`'s offsets when given).
  // `tty` is how it was started. `io` is moved from only on success.
  Result<ExecHandle> reattach(ProcessId id, bool tty, const ReattachRequest& request, ExecIo&& io);

  Result<void> ping(std::chrono::milliseconds timeout);
  // Asks the agent to kill everything, sync and power off (or reboot); returns once acknowledged. The
  // channel then closes, which fires the LostCallback.
  Result<void> shutdown(bool reboot, std::chrono::milliseconds timeout);

  // Runs `operation(AgentConnection&)` on the hub thread and returns what it returned (a Result<T>), e.g.
  // `hub.call([&](AgentConnection& c) { return c.mount(...); })`. While it runs, sessions' client I/O waits
  // (agent traffic is still dispatched into the connection's bounded buffers by its blocking helpers), so
  // the operation must bound its own time: pass a timeout to every blocking AgentConnection helper. It must
  // not start_process() without releasing the id, nor touch ids of exec sessions, nor call the hub.
  template <typename Operation>
  auto call(Operation&& operation) -> std::invoke_result_t<Operation&, AgentConnection&>;

  // False once the channel to the agent is gone (the LostCallback has been or is being called).
  bool alive() const;

 private:
  AgentHub() = default;
  Result<void> run_on_hub(std::function<void(AgentConnection&)> work);

  std::shared_ptr<detail::HubMailbox> mailbox_;
  std::unique_ptr<detail::HubLoop> loop_;  // used by the hub thread only, destroyed after joining it
  std::thread thread_;
};

template <typename Operation>
auto AgentHub::call(Operation&& operation) -> std::invoke_result_t<Operation&, AgentConnection&> {
  using Returned = std::invoke_result_t<Operation&, AgentConnection&>;
  std::optional<Returned> returned;
  // The caller waits for the hub thread, so capturing by reference is safe.
  Result<void> ran =
      run_on_hub([&](AgentConnection& connection) { returned.emplace(operation(connection)); });
  if (!ran) return std::move(ran).error();
  return std::move(*returned);
}

}  // namespace kiln::agent

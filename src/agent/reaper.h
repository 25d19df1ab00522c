// Reaper: kiln-agent's only waiter. It owns SIGCHLD (blocked, read through a signalfd) and reaps every exited
// child with waitid(P_ALL), dispatching each exit status to the owner that registered the pid. Unregistered
// pids (orphans reparented to PID 1, exec-failure children) are reaped and dropped. Nothing else in the agent
// may call wait*(): a second waiter could steal a status its owner needs (which is why the agent does not use
// ChildProcess). Agent thread only.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <unordered_map>

#include "common/child_process.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

class Reaper {
 public:
  using ExitHandler = std::function<void(ExitStatus)>;

  // Blocks SIGCHLD for the calling thread (children unblock it before exec). Create before spawning.
  static Result<std::unique_ptr<Reaper>> create();

  // Readable when a child may have exited; then call reap().
  int fd() const { return signal_fd_.get(); }
  // Routes `pid`'s exit to `handler` (called from reap(), at most once).
  void watch(pid_t pid, ExitHandler handler);
  // The owner no longer cares; the pid will still be reaped.
  void forget(pid_t pid) { owners_.erase(pid); }
  // Reaps every child that has exited so far and dispatches the statuses.
  Result<void> reap();

 private:
  explicit Reaper(UniqueFd signal_fd) : signal_fd_(std::move(signal_fd)) {}
  UniqueFd signal_fd_;
  std::unordered_map<pid_t, ExitHandler> owners_;
};

}  // namespace kiln::agent

// MonitorProcess: the host process that runs one VM (QEMU today), either spawned by this process (a child we
// reap, with a known exit status) or adopted after a restart of kilnd (found by pid, watched through a pidfd,
// exit status unknown because someone else reaps it). Either way it can be released: forgotten without being
// stopped, which is how VMs outlive the daemon. One thread at a time.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "common/child_process.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::engine {

class MonitorProcess {
 public:
  // A child we spawned. If `outlives_owner`, dropping this object releases the child instead of killing it.
  static MonitorProcess spawned(ChildProcess child, bool outlives_owner);
  // A process we did not spawn: its working directory is `expected_cwd`, or `expected_in_cmdline` appears in
  // /proc/PID/cmdline (checked after the pidfd is open, so a recycled pid is never mistaken for the VM).
  // kNotFound if it is gone or is not it.
  static Result<MonitorProcess> adopt(pid_t pid, std::string_view expected_in_cmdline,
                                      std::string_view expected_cwd = {});

  MonitorProcess(MonitorProcess&&) noexcept = default;
  MonitorProcess& operator=(MonitorProcess&&) noexcept = default;
  ~MonitorProcess();

  pid_t pid() const { return pid_; }
  // Readable once the process has exited.
  int exit_fd() const;
  bool has_exited();
  // Known only for spawned children.
  std::optional<ExitStatus> exit_status() const { return status_; }
  // SIGKILL, then wait until it is gone.
  Result<void> kill();
  // Waits up to `timeout`; true once it has exited.
  Result<bool> wait_for(std::chrono::milliseconds timeout);
  // Forget the process without stopping it.
  void release();

 private:
  MonitorProcess() = default;
  void note_exit();

  std::optional<ChildProcess> child_;
  UniqueFd adopted_pidfd_;
  pid_t pid_ = -1;
  bool outlives_owner_ = false;
  bool exited_ = false;
  std::optional<ExitStatus> status_;
};

}  // namespace kiln::engine

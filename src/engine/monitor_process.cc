#include "engine/monitor_process.h"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>

namespace kiln::engine {

MonitorProcess MonitorProcess::spawned(ChildProcess child, bool outlives_owner) {
  MonitorProcess monitor;
  monitor.pid_ = child.pid();
  monitor.child_.emplace(std::move(child));
  monitor.outlives_owner_ = outlives_owner;
  return monitor;
}

Result<MonitorProcess> MonitorProcess::adopt(pid_t pid, std::string_view expected_in_cmdline,
                                             std::string_view expected_cwd) {
  if (pid <= 0) return Error::not_found("no monitor pid recorded");
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return Error::not_found(fmt::format("monitor process {} is gone", pid));
  // /proc/PID/cmdline separates arguments with NULs; a substring search still finds a path argument.
  std::error_code error;
  auto cwd = std::filesystem::read_symlink(fmt::format("/proc/{}/cwd", pid), error);
  bool in_place = !expected_cwd.empty() && !error &&
                  cwd == std::filesystem::weakly_canonical(std::filesystem::path(expected_cwd), error);
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid), 1 << 20);
  if (!in_place && (!cmdline || cmdline->find(expected_in_cmdline) == std::string::npos)) {
    return Error::not_found(fmt::format("process {} is not this VM's monitor", pid));
  }
  MonitorProcess monitor;
  monitor.pid_ = pid;
  monitor.adopted_pidfd_ = std::move(pidfd);
  monitor.outlives_owner_ = true;
  return monitor;
}

MonitorProcess::~MonitorProcess() {
  if (child_ && outlives_owner_) child_->detach();
  // Otherwise ChildProcess's destructor kills and reaps.
}

int MonitorProcess::exit_fd() const {
  return child_ ? child_->pidfd() : adopted_pidfd_.get();
}

void MonitorProcess::note_exit() {
  exited_ = true;
}

bool MonitorProcess::has_exited() {
  if (exited_) return true;
  if (child_) {
    if (child_->reaped()) {
      exited_ = true;
    } else if (auto status = child_->try_wait(); status && *status) {
      status_ = **status;
      exited_ = true;
    }
    return exited_;
  }
  if (!adopted_pidfd_) return true;
  pollfd pfd{.fd = adopted_pidfd_.get(), .events = POLLIN, .revents = 0};
  if (::poll(&pfd, 1, 0) > 0) note_exit();
  return exited_;
}

Result<bool> MonitorProcess::wait_for(std::chrono::milliseconds timeout) {
  if (has_exited()) return true;
  if (child_) {
    auto status = KILN_TRY(child_->wait_for(timeout));
    if (status) {
      status_ = *status;
      exited_ = true;
    }
    return exited_;
  }
  pollfd pfd{.fd = adopted_pidfd_.get(), .events = POLLIN, .revents = 0};
  int ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (ready < 0 && errno != EINTR) return Error::last_os_error("poll monitor pidfd");
  if (ready > 0) note_exit();
  return exited_;
}

Result<void> MonitorProcess::kill() {
  if (has_exited()) return ok();
  if (child_) {
    KILN_TRY(child_->send_signal(SIGKILL));
    status_ = KILN_TRY(child_->wait());
    exited_ = true;
    return ok();
  }
  if (::syscall(SYS_pidfd_send_signal, adopted_pidfd_.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
    return Error::last_os_error(fmt::format("kill monitor {}", pid_));
  }
  if (!KILN_TRY(wait_for(std::chrono::seconds(10)))) {
    return Error::timeout(fmt::format("monitor {} did not exit after SIGKILL", pid_));
  }
  return ok();
}

void MonitorProcess::release() {
  outlives_owner_ = true;
  if (child_) {
    child_->detach();
    child_.reset();
  }
  adopted_pidfd_.reset();
  exited_ = true;  // no longer ours to watch
}

}  // namespace kiln::engine

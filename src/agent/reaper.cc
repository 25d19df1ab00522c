#include "agent/reaper.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace kiln::agent {

Result<std::unique_ptr<Reaper>> Reaper::create() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (int error = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0)
    return Error::from_errno("block SIGCHLD", error);
  UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return Error::last_os_error("signalfd");
  return std::unique_ptr<Reaper>(new Reaper(std::move(fd)));
}

void Reaper::watch(pid_t pid, ExitHandler handler) {
  owners_[pid] = std::move(handler);
}

Result<void> Reaper::reap() {
  // Drain the signalfd first: SIGCHLDs coalesce, so one notification may stand for many exits, and the
  // waitid loop below collects all of them.
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
  }
  for (;;) {
    siginfo_t child{};
    if (::waitid(P_ALL, 0, &child, WEXITED | WNOHANG) != 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) return ok();
      return Error::last_os_error("waitid");
    }
    if (child.si_pid == 0) return ok();  // children exist, none has exited
    ExitStatus status = (child.si_code == CLD_EXITED) ? ExitStatus::exited(child.si_status)
                                                      : ExitStatus::signaled(child.si_status);
    auto owner = owners_.find(child.si_pid);
    if (owner == owners_.end()) continue;
    ExitHandler handler = std::move(owner->second);
    owners_.erase(owner);
    handler(status);
  }
}

}  // namespace kiln::agent

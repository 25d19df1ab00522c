#include "cli/terminal.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace kiln::cli {

Result<RawTerminal> RawTerminal::enter(int fd) {
  if (!::isatty(fd)) return RawTerminal(fd, std::nullopt);
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0) return Error::last_os_error("tcgetattr");
  termios raw = saved;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) return Error::last_os_error("tcsetattr");
  return RawTerminal(fd, saved);
}

RawTerminal::~RawTerminal() {
  if (saved_) (void)::tcsetattr(fd_, TCSANOW, &*saved_);
}

std::optional<agent::TtySize> terminal_size(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_row == 0) return std::nullopt;
  return agent::TtySize{size.ws_row, size.ws_col};
}

Result<UniqueFd> block_forwarded_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&set, sig);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0)
    return Error::from_errno("pthread_sigmask", rc);
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) return Error::last_os_error("signalfd");
  return fd;
}

}  // namespace kiln::cli

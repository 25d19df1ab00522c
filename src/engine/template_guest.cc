#include "engine/template_guest.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace kiln::engine {
namespace {

using Clock = std::chrono::steady_clock;

// The console text from byte `from` on (bounded: a guest flooding its console cannot exhaust the host).
std::string console_from(const std::string& path, uint64_t from) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd || ::lseek(fd.get(), static_cast<off_t>(from), SEEK_SET) < 0) return {};
  auto text = read_to_end(fd.get(), 1 << 20);
  return text ? *text : std::string{};
}

}  // namespace

uint64_t console_size(const VmInstance& vm) {
  struct stat st {};
  if (::stat(vm.console_log_path().c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

Result<void> wait_for_console_text(const VmInstance& vm, std::string_view text, uint64_t from,
                                   std::chrono::milliseconds timeout) {
  std::string path = vm.console_log_path();
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify) return Error::last_os_error("inotify_init1");
  if (::inotify_add_watch(inotify.get(), path.c_str(), IN_MODIFY) < 0)
    return Error::last_os_error(fmt::format("watch {}", path));
  auto deadline = Clock::now() + timeout;
  for (;;) {
    // Read after arming the watch, so a write between the two is not missed.
    if (console_from(path, from).find(text) != std::string::npos) return ok();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return Error::timeout(
          fmt::format("the VM's console did not show \"{}\" in {} ms", text, timeout.count()));
    pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {vm.exit_fd(), POLLIN, 0}};
    int ready = ::poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) return Error::last_os_error("poll");
    if (fds[1].revents != 0) return Error::unavailable("the VM stopped while waiting for its console");
    char events[4096];
    while (::read(inotify.get(), events, sizeof events) > 0) {
    }
  }
}

Result<void> settle_template_guest(VmInstance& vm, std::chrono::milliseconds timeout,
                                   const std::function<Result<void>(agent::AgentConnection&)>& prepare) {
  UniqueFd channel = KILN_TRY_CONTEXT(vm.connect_agent(), "connect to the template's agent");
  auto agent = KILN_TRY_CONTEXT(agent::AgentConnection::connect(std::move(channel), timeout),
                                "the template's agent did not answer");
  if (prepare) KILN_TRY(prepare(*agent));
  uint64_t before_close = console_size(vm);
  agent.reset();
  KILN_TRY_CONTEXT(wait_for_console_text(vm, kAgentSessionEndedLine, before_close, timeout),
                   "wait for the template's agent to end the session");
  return ok();
}

}  // namespace kiln::engine

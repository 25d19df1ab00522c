#include "engine/qemu/qemu_vm.h"

#include <signal.h>

#include "common/unix_socket.h"

namespace kiln::engine::qemu {

Result<UniqueFd> QemuVm::connect_agent() {
  return KILN_TRY_CONTEXT(connect_unix_socket(paths_.agent_socket), "agent channel");
}

Result<void> QemuVm::pause() {
  KILN_TRY(qmp_.execute("stop"));
  return ok();
}

Result<void> QemuVm::resume() {
  KILN_TRY(qmp_.execute("cont"));
  return ok();
}

Result<VmRunState> QemuVm::run_state() {
  if (process_.reaped() || KILN_TRY(process_.try_wait())) return VmRunState::kExited;
  Json status = KILN_TRY(qmp_.execute("query-status"));
  std::string state = status.value("status", "");
  if (state == "running") return VmRunState::kRunning;
  if (state == "paused" || state == "suspended") return VmRunState::kPaused;
  return VmRunState::kShutdown;
}

Result<void> QemuVm::kill() {
  KILN_TRY(process_.send_signal(SIGKILL));
  KILN_TRY(process_.wait());
  return ok();
}

Result<std::optional<ExitStatus>> QemuVm::wait_for_exit(std::chrono::milliseconds timeout) {
  return process_.wait_for(timeout);
}

}  // namespace kiln::engine::qemu

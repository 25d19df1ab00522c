#include "engine/qemu/qemu_vm.h"

#include <fmt/format.h>
#include <signal.h>
#include <stdio.h>

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
  if (process_.has_exited()) return VmRunState::kExited;
  Json status = KILN_TRY(qmp_.execute("query-status"));
  std::string state = status.value("status", "");
  if (state == "running") return VmRunState::kRunning;
  if (state == "paused" || state == "suspended") return VmRunState::kPaused;
  return VmRunState::kShutdown;
}

std::string QemuVm::exit_reason() {
  // QEMU announces a guest-initiated end with a SHUTDOWN event before it exits (-no-reboot turns a reboot
  // into an exit too); a kill leaves no event.
  qmp_.collect_pending_events();
  for (const auto& event : qmp_.take_events()) {
    if (event.value("event", "") != "SHUTDOWN") continue;
    std::string reason = event.contains("data") ? event["data"].value("reason", "") : "";
    if (reason == "guest-shutdown") return "the guest powered off";
    if (reason == "guest-reset") return "the guest rebooted (a Kiln VM stops when its guest reboots)";
    if (reason == "guest-panic") return "the guest kernel panicked";
    if (reason == "host-qmp-quit" || reason == "host-signal") return "the VM's monitor was told to quit";
    if (!reason.empty()) return fmt::format("the VM shut down ({})", reason);
  }
  if (auto status = process_.exit_status()) {
    if (status->success()) return "the VM's monitor exited";
    return fmt::format("the VM's monitor {}", status->describe());
  }
  return "the VM's monitor exited unexpectedly";
}

Result<void> QemuVm::save_state(const std::string& dir) {
  if (shape_.cpus == 0)
    return Error::internal("QemuVm::save_state: the engine did not record the VM's shape");
  return save_vm_state(qmp_, process_, shape_, dir);
}

Result<void> QemuVm::relocate(const std::string& runtime_dir) {
  // QEMU holds its console log, listening sockets and working directory open, not by path: the rename moves
  // them all. A socket keeps answering at its new path (a bound socket is its inode).
  if (::rename(paths_.runtime_dir.c_str(), runtime_dir.c_str()) != 0)
    return Error::last_os_error(fmt::format("move {} to {}", paths_.runtime_dir, runtime_dir));
  paths_ = paths_for(runtime_dir);
  return ok();
}

Result<void> QemuVm::kill() {
  return process_.kill();
}

Result<std::optional<ExitStatus>> QemuVm::wait_for_exit(std::chrono::milliseconds timeout) {
  if (!KILN_TRY(process_.wait_for(timeout))) return std::optional<ExitStatus>();
  // An adopted monitor's status is unknown (its parent reaps it); report a plain exit.
  return std::optional<ExitStatus>(process_.exit_status().value_or(ExitStatus::exited(0)));
}

}  // namespace kiln::engine::qemu

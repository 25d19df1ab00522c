#include "engine/qemu/qemu_vm.h"

#include <fmt/format.h>
#include <signal.h>
#include <stdio.h>

#include "common/log.h"
#include "common/unix_socket.h"
#include "engine/share_entries.h"

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
  // A share whose directory was in the runtime directory (a container's) moved with it.
  for (auto& share : shape_.shares)
    share.host_path = moved_path(share.host_path, paths_.runtime_dir, runtime_dir);
  paths_ = paths_for(runtime_dir);
  return ok();
}

namespace {

// The generation of `node` if it is one of slot `slot`'s protocol nodes: 0 for the one it was launched with
// (disk<i>-file), N for the one swap_disk added as disk<i>-file-N.
std::optional<unsigned> slot_child_generation(size_t slot, const std::string& node) {
  std::string first = slot_file_node(slot);
  if (node == first) return 0;
  if (node.size() <= first.size() + 1 || node.compare(0, first.size() + 1, first + "-") != 0) return {};
  std::string digits = node.substr(first.size() + 1);
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return {};
  return static_cast<unsigned>(std::stoul(digits));
}

Json protocol_node(const std::string& name, const DiskSpec& disk) {
  Json node = {{"node-name", name}, {"read-only", disk.read_only}};
  if (disk.path.empty()) {
    node["driver"] = "null-co";
    node["size"] = disk.placeholder_bytes;
    node["read-zeroes"] = true;
  } else {
    node["driver"] = "file";
    node["filename"] = disk.path;
  }
  return node;
}

}  // namespace

Result<void> QemuVm::swap_disk(size_t slot, const DiskSpec& disk) {
  DiskSpec wanted = KILN_TRY(check_disk_for_slot(slots_, slot, disk));
  if (process_.has_exited()) return Error::failed_precondition("the VM is not running");
  std::string what = wanted.path.empty() ? "a placeholder" : fmt::format("disk {}", wanted.path);
  Json nodes = KILN_TRY_CONTEXT(qmp_.execute("query-named-block-nodes", Json{{"flat", true}}),
                                "list the VM's block nodes");
  std::vector<std::string> old_children;
  unsigned next = 1;
  for (const auto& node : nodes) {
    std::string name = node.value("node-name", "");
    if (auto generation = slot_child_generation(slot, name)) {
      old_children.push_back(name);
      next = std::max(next, *generation + 1);
    }
  }
  std::string child = fmt::format("{}-{}", slot_file_node(slot), next);
  if (auto added = qmp_.execute("blockdev-add", protocol_node(child, wanted)); !added) {
    return Error::failed_precondition(
        fmt::format("open {} for disk slot {}: {}", what, slot, added.error().message()));
  }
  // blockdev-reopen takes the node's whole option set: what the command line gave it, with the new child.
  Json raw = {
      {"driver", "raw"}, {"node-name", slot_node(slot)}, {"file", child}, {"read-only", wanted.read_only}};
  Json options = Json::array();
  options.push_back(raw);
  if (auto reopened = qmp_.execute("blockdev-reopen", Json{{"options", options}}); !reopened) {
    if (auto removed = qmp_.execute("blockdev-del", Json{{"node-name", child}}); !removed) {
      log::warn("could not remove a disk node after a failed swap",
                {{"node", child}, {"error", removed.error().message()}});
    }
    return Error::failed_precondition(
        fmt::format("put {} into disk slot {}: {}", what, slot, reopened.error().message()));
  }
  // The slot's earlier children, the one just replaced and any a failed removal left behind: none is used
  // now.
  for (const auto& old : old_children) {
    if (auto removed = qmp_.execute("blockdev-del", Json{{"node-name", old}}); !removed) {
      log::warn("could not remove a swapped-out disk node",
                {{"node", old}, {"error", removed.error().message()}});
    }
  }
  if (slot < shape_.disks.size()) shape_.disks[slot] = wanted.path;
  return ok();
}

Result<void> QemuVm::add_share_entries(size_t share, const std::vector<ShareEntry>& entries) {
  if (share >= shape_.shares.size()) {
    return Error::invalid_argument(
        fmt::format("the VM has no share {} (it has {} shares)", share, shape_.shares.size()));
  }
  ShareSpec& spec = shape_.shares[share];
  if (process_.has_exited()) return Error::failed_precondition("the VM is not running");
  std::vector<PrivateBind> binds = KILN_TRY(prepare_late_share_entries(spec, entries));
  KILN_TRY(bind_into_monitor(process_.pid(), process_.exit_fd(), binds));
  spec.entries.insert(spec.entries.end(), entries.begin(), entries.end());
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

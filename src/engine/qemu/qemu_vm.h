// One running QEMU VM: owns the QEMU process and its QMP connection. Dropping it kills the VM unless it was
// launched to outlive its launcher (or adopted, or released). One thread at a time.
#pragma once

#include "engine/disk_slots.h"
#include "engine/engine.h"
#include "engine/monitor_process.h"
#include "engine/qemu/command_line.h"
#include "engine/qemu/qemu_snapshot.h"
#include "engine/qemu/qmp.h"

namespace kiln::engine::qemu {

class QemuVm final : public VmInstance {
 public:
  QemuVm(MonitorProcess process, QmpClient qmp, VmPaths paths)
      : process_(std::move(process)), qmp_(std::move(qmp)), paths_(std::move(paths)) {}

  Result<UniqueFd> connect_agent() override;
  Result<void> pause() override;
  Result<void> resume() override;
  Result<VmRunState> run_state() override;
  Result<void> kill() override;
  Result<std::optional<ExitStatus>> wait_for_exit(std::chrono::milliseconds timeout) override;
  int exit_fd() const override { return process_.exit_fd(); }
  std::string exit_reason() override;
  std::string console_log_path() const override { return paths_.console_log; }

  pid_t monitor_pid() const override { return process_.pid(); }
  void release() override { process_.release(); }
  Result<void> relocate(const std::string& runtime_dir) override;
  Result<void> save_state(const std::string& dir) override;
  // A new protocol node for the disk (its name derived from the nodes QEMU has, so an adopted VM swaps too),
  // blockdev-reopen of the slot's raw node onto it, then blockdev-del of the slot's other protocol nodes.
  Result<void> swap_disk(size_t slot, const DiskSpec& disk) override;
  Result<void> add_share_entries(size_t share, const std::vector<ShareEntry>& entries) override;
  // What save_state records about the VM's hardware (QemuEngine sets it at launch and adoption).
  void set_shape(snapshot::VmShape shape) { shape_ = std::move(shape); }
  // The disk slots as the guest saw them (QemuEngine sets them at launch, fork and adoption).
  void set_disk_slots(std::vector<DiskSlot> slots) { slots_ = std::move(slots); }
  const snapshot::VmShape& shape() const { return shape_; }
  // Loads a saved state into this QEMU (started with -incoming defer) and resumes the guest.
  Result<void> load_state(PreparedRestore restore) {
    return load_vm_state(qmp_, process_, std::move(restore));
  }
  QmpClient& qmp() { return qmp_; }
  MonitorProcess& monitor() { return process_; }
  const VmPaths& paths() const { return paths_; }

 private:
  MonitorProcess process_;
  QmpClient qmp_;
  VmPaths paths_;
  snapshot::VmShape shape_;
  std::vector<DiskSlot> slots_;
};

}  // namespace kiln::engine::qemu

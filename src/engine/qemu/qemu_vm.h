// One running QEMU VM: owns the QEMU process and its QMP connection. Dropping it kills the VM unless it was
// launched to outlive its launcher. One thread at a time.
#pragma once

#include "common/child_process.h"
#include "engine/engine.h"
#include "engine/qemu/command_line.h"
#include "engine/qemu/qmp.h"

namespace kiln::engine::qemu {

class QemuVm final : public VmInstance {
 public:
  QemuVm(ChildProcess process, QmpClient qmp, VmPaths paths)
      : process_(std::move(process)), qmp_(std::move(qmp)), paths_(std::move(paths)) {}

  Result<UniqueFd> connect_agent() override;
  Result<void> pause() override;
  Result<void> resume() override;
  Result<VmRunState> run_state() override;
  Result<void> kill() override;
  Result<std::optional<ExitStatus>> wait_for_exit(std::chrono::milliseconds timeout) override;
  int exit_fd() const override { return process_.pidfd(); }
  std::string console_log_path() const override { return paths_.console_log; }

  pid_t pid() const { return process_.pid(); }
  QmpClient& qmp() { return qmp_; }

 private:
  ChildProcess process_;
  QmpClient qmp_;
  VmPaths paths_;
};

}  // namespace kiln::engine::qemu

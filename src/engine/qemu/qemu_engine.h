// The QEMU engine: runs each VM as a qemu-system-x86_64 process (microvm machine) driven over QMP.
// KVM where the host has hardware virtualization, TCG otherwise. The engine object is immutable after
// creation and may be shared; each QemuVm belongs to one thread at a time.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"
#include "engine/qemu/command_line.h"

namespace kiln::engine::qemu {

class QemuEngine final : public Engine {
 public:
  // Finds the QEMU binary (`qemu_binary`, else qemu-system-x86_64 on PATH); VMs run on `accelerator` (see
  // engine_factory.h, which decides it).
  static Result<std::unique_ptr<QemuEngine>> create(std::string qemu_binary, Accelerator accelerator);

  std::string_view name() const override { return "qemu"; }
  Accelerator accelerator() const override { return host_.accelerator; }
  Result<std::unique_ptr<VmInstance>> launch(const VmSpec& spec) override;
  Result<std::unique_ptr<VmInstance>> adopt(const VmSpec& spec, pid_t monitor_pid) override;
  const HostFacts& host() const { return host_; }

 private:
  QemuEngine(std::string binary, HostFacts host) : binary_(std::move(binary)), host_(host) {}
  std::string binary_;
  HostFacts host_;
};

}  // namespace kiln::engine::qemu

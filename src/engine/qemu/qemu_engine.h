// The QEMU engine: runs each VM as a qemu-system-x86_64 process (microvm machine) driven over QMP.
// KVM where the host has hardware virtualization, TCG otherwise. The engine object is immutable after
// creation and may be shared; each QemuVm belongs to one thread at a time.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/engine.h"
#include "engine/qemu/command_line.h"
#include "engine/qemu/qemu_snapshot.h"

namespace kiln::engine::qemu {

class QemuVm;

class QemuEngine final : public Engine {
 public:
  // Finds the QEMU binary (`qemu_binary`, else qemu-system-x86_64 on PATH); VMs run on `accelerator` (see
  // engine_factory.h, which decides it).
  static Result<std::unique_ptr<QemuEngine>> create(std::string qemu_binary, Accelerator accelerator,
                                                    unsigned tcg_code_cache_mib = 0);

  std::string_view name() const override { return "qemu"; }
  Accelerator accelerator() const override { return host_.accelerator; }
  Result<std::unique_ptr<VmInstance>> launch(const VmSpec& spec) override;
  Result<std::unique_ptr<VmInstance>> adopt(const VmSpec& spec, pid_t monitor_pid) override;
  Result<std::string> template_key(const VmSpec& spec) override;
  Result<VmTemplate> build_template(const VmSpec& spec, const std::string& dir,
                                    const std::function<Result<void>(VmInstance&)>& until_idle) override;
  Result<VmTemplate> open_template(const std::string& dir) override;
  Result<std::unique_ptr<VmInstance>> fork(const VmTemplate& from, const VmSpec& spec) override;
  Result<VmTemplate> snapshot_running(VmInstance& vm, const std::string& dir, const std::string& key,
                                      const std::function<Result<void>()>& while_paused) override;
  Result<void> suspend_running(VmInstance& vm, const std::string& dir) override;
  const HostFacts& host() const { return host_; }
  // "7.2.22": what templates record (asked once, when first needed).
  Result<std::string> version();

 private:
  QemuEngine(std::string binary, HostFacts host) : binary_(std::move(binary)), host_(host) {}
  // Spawns QEMU for `spec` and negotiates QMP; the guest boots, or waits for a state (kIncoming).
  Result<std::unique_ptr<QemuVm>> start(const VmSpec& spec, StartMode mode, StartTimings& timings);
  // Feeds a prepared state into a QEMU started with kIncoming, and resumes the guest.
  Result<void> load_into(QemuVm& vm, PreparedRestore restore, StartTimings& timings);

  std::string binary_;
  HostFacts host_;
  std::mutex version_mutex_;
  std::string version_;
  // Content hashes of kernels and initramfs files, by path, size and modification time (hashing a kernel on
  // every fork would cost more than the fork).
  std::mutex hashes_mutex_;
  std::map<std::string, std::string> hashes_;
};

}  // namespace kiln::engine::qemu

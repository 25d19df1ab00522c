// The one place that turns configuration into an Engine: kilnd and `kiln vm run` both ask here, so adding the
// built-in kiln-vmm later changes this file, not its callers. Pure construction; call from any thread (it
// reads $KILN_QEMU, so before other threads start).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"
#include "engine/engine.h"

namespace kiln::engine {

enum class AcceleratorChoice { kAuto, kKvm, kTcg };

struct EngineConfig {
  // "qemu", or "auto": the best engine this host has (QEMU today).
  std::string name = "auto";
  AcceleratorChoice accelerator = AcceleratorChoice::kAuto;
  // The QEMU binary; empty: $KILN_QEMU, then qemu-system-x86_64 on PATH.
  std::string qemu_binary;
  // Under TCG: the size of each VM's translated-code cache in MiB (QEMU's -accel tcg,tb-size); 0: QEMU's
  // default (up to 1 GiB, filled as the guest runs new code). Most of an idle container VM's own memory under
  // TCG is this cache (~28 MiB after a minute); a small one saves memory and costs CPU when a busy guest's
  // code no longer fits (docs/benchmarks.md: 8 MiB took an idle container from 58 to 36 MiB PSS and made a
  // busy one ~20% slower). Ignored under KVM.
  unsigned tcg_code_cache_mib = 0;
};

// kInvalidArgument for an unknown engine name; kNotFound when the engine's monitor binary is missing;
// kFailedPrecondition when KVM is asked for on a host without usable KVM.
Result<std::unique_ptr<Engine>> make_engine(const EngineConfig& config);

// "auto", "kvm" or "tcg"; kInvalidArgument otherwise.
Result<AcceleratorChoice> parse_accelerator_choice(std::string_view text);
// The accelerator to use given what the host offers (`detected`, from detect_accelerator()).
Result<Accelerator> resolve_accelerator(AcceleratorChoice choice, Accelerator detected);

}  // namespace kiln::engine

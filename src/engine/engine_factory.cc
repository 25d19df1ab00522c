#include "engine/engine_factory.h"

#include <fmt/format.h>

#include <cstdlib>

#include "engine/accelerator.h"
#include "engine/qemu/qemu_engine.h"

namespace kiln::engine {

Result<AcceleratorChoice> parse_accelerator_choice(std::string_view text) {
  if (text == "auto") return AcceleratorChoice::kAuto;
  if (text == "kvm") return AcceleratorChoice::kKvm;
  if (text == "tcg") return AcceleratorChoice::kTcg;
  return Error::invalid_argument(fmt::format("unknown accelerator \"{}\" (expected auto, kvm or tcg)", text));
}

Result<Accelerator> resolve_accelerator(AcceleratorChoice choice, Accelerator detected) {
  switch (choice) {
    case AcceleratorChoice::kAuto:
      return detected;
    case AcceleratorChoice::kTcg:
      return Accelerator::kTcg;
    case AcceleratorChoice::kKvm:
      if (detected != Accelerator::kKvm) {
        return Error::failed_precondition(
            "KVM was asked for, but this host has no usable KVM (no vmx/svm CPU flag or no usable /dev/kvm)");
      }
      return Accelerator::kKvm;
  }
  return Error::internal("unknown accelerator choice");
}

Result<std::unique_ptr<Engine>> make_engine(const EngineConfig& config) {
  if (config.name != "auto" && config.name != "qemu") {
    return Error::invalid_argument(fmt::format("unknown engine \"{}\" (expected auto or qemu)", config.name));
  }
  std::string binary = config.qemu_binary;
  if (binary.empty()) {
    const char* from_env = std::getenv("KILN_QEMU");  // NOLINT(concurrency-mt-unsafe): documented above
    if (from_env) binary = from_env;
  }
  Accelerator accelerator = KILN_TRY(resolve_accelerator(config.accelerator, detect_accelerator()));
  return std::unique_ptr<Engine>(
      KILN_TRY(qemu::QemuEngine::create(binary, accelerator, config.tcg_code_cache_mib)));
}

}  // namespace kiln::engine

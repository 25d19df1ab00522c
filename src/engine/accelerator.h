// Which accelerator this host offers: KVM only with real hardware virtualization (vmx/svm in /proc/cpuinfo
// and a usable /dev/kvm); otherwise TCG. A software KVM (PVM) without vmx/svm runs ordinary guests at
// about 1 MIPS, so it does not count. Pure query; any thread.
#pragma once

#include <string>

#include "engine/engine.h"

namespace kiln::engine {

Accelerator detect_accelerator();
// The decision from its inputs, for tests.
Accelerator choose_accelerator(const std::string& cpuinfo, bool kvm_device_usable);
// The host TSC frequency in kHz (from /proc/cpuinfo), 0 if unknown. TCG guests need it on their command
// line: their TSC calibration against the emulated PIT can hang boot.
unsigned long host_tsc_khz();
unsigned long parse_cpu_khz(const std::string& cpuinfo);

}  // namespace kiln::engine

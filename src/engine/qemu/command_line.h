// Builds the qemu-system-x86_64 command line for a VmSpec. Pure: no I/O, so it is unit-tested directly.
// The layout is fixed by Kiln's fork design: RAM from a named memory backend, the agent on a chardev socket
// at a per-VM path, disks behind named -blockdev nodes (so a clone can be given its own files behind the
// same slots), and no workload detail on the kernel command line.
#pragma once

#include <string>
#include <vector>

#include "engine/engine.h"

namespace kiln::engine::qemu {

struct VmPaths {
  std::string qmp_socket;
  std::string agent_socket;
  std::string console_log;
  std::string monitor_log;  // QEMU's own stderr
};

VmPaths paths_for(const std::string& runtime_dir);

struct HostFacts {
  Accelerator accelerator = Accelerator::kTcg;
  unsigned long tsc_khz = 0;  // 0: unknown
};

// The guest kernel command line Kiln always uses (console, power-off behaviour, TCG timing fixes).
std::string guest_cmdline(const VmSpec& spec, const HostFacts& host);

std::vector<std::string> qemu_arguments(const std::string& qemu_binary, const VmSpec& spec,
                                        const HostFacts& host);

}  // namespace kiln::engine::qemu

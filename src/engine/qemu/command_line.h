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
  std::string runtime_dir;  // QEMU's working directory too: what identifies its process (adopt)
  std::string qmp_socket;
  std::string agent_socket;
  std::string console_log;
  std::string monitor_log;  // QEMU's own stderr
};

VmPaths paths_for(const std::string& runtime_dir);

// The engine listens on the QMP and agent sockets itself and hands the listening sockets to QEMU as these
// descriptors: a client connecting right after the spawn is queued instead of retrying until QEMU has made
// the socket, and QEMU's greeting is the event that says its monitor is ready.
inline constexpr int kQmpListenFd = 3;
inline constexpr int kAgentListenFd = 4;
// NIC i's tap is descriptor kFirstTapFd + i in QEMU.
inline constexpr int kFirstTapFd = 5;

struct HostFacts {
  Accelerator accelerator = Accelerator::kTcg;
  unsigned long tsc_khz = 0;        // 0: unknown
  unsigned tcg_code_cache_mib = 0;  // TCG's tb-size; 0: QEMU's default
};

// The guest kernel command line Kiln always uses (console, power-off behaviour, TCG timing fixes).
std::string guest_cmdline(const VmSpec& spec, const HostFacts& host);

enum class StartMode {
  kBoot,      // the guest boots from its kernel
  kIncoming,  // QEMU waits for a saved state (-incoming defer): restore_from, or a fork
};

// Node names of disk slot `slot`: the raw node the guest's virtio-blk device is attached to, and the protocol
// node under it at launch (a file, or null-co for a placeholder). A swapped-in child gets another name
// (QemuVm::swap_disk); the raw node's name never changes.
std::string slot_node(size_t slot);
std::string slot_file_node(size_t slot);

std::vector<std::string> qemu_arguments(const std::string& qemu_binary, const VmSpec& spec,
                                        const HostFacts& host, StartMode mode = StartMode::kBoot);

}  // namespace kiln::engine::qemu

// `kiln vm run`: boot a throwaway VM, run one command in it through the agent with stdio attached, exit
// with the command's status, and tear the VM down (gracefully when it booted from a root disk, so the disk
// is clean). No daemon involved.
#pragma once

#include <string>
#include <vector>

#include "cli/command.h"

namespace kiln::cli {

struct VmRunOptions {
  unsigned cpus = 1;
  std::string memory = "512M";
  bool interactive = false;
  bool tty = false;
  std::vector<std::string> env;
  std::string workdir;
  std::string kernel;
  std::string initrd;
  std::vector<std::string> disks;    // --disk: raw images attached as extra virtio-blk disks
  std::string root_disk;             // --root-disk: an ext4 image the guest boots into
  std::vector<std::string> volumes;  // -v HOSTDIR:GUESTPATH[:ro]: 9p shares the agent mounts
  std::string boot = "fork";         // --boot: fork from a template (when the VM can be), or cold
  std::vector<std::string> command;
};

// Exit codes of Kiln's own failures, as docker run uses them: 125 (Kiln failed), 126/127 (command could
// not be started / not found); otherwise the command's status (128+N for signal N).
inline constexpr int kExitKilnError = 125;

int run_vm_run(const VmRunOptions& options);
void register_vm_run(CLI::App& vm, Action& chosen);

}  // namespace kiln::cli

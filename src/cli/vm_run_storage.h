// Storage for `kiln vm run`: --disk, --root-disk and -v/--volume turned into the VmSpec's disks and virtio-9p
// shares, plus the MOUNT requests the CLI sends once the guest's agent answers (shares are mounted by the
// agent, not by the kernel command line, so a booted VM could serve any workload). Checks the host paths
// with stat(); otherwise pure. Any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent/protocol/messages.h"
#include "common/error.h"
#include "engine/engine.h"

namespace kiln::cli {

// Where a volume given as a bare name (-v DIR:NAME) appears in the guest, as VMware and Kiln's daemon do.
inline constexpr std::string_view kSharedFoldersRoot = "/mnt/hgfs";

struct RunStorage {
  std::vector<engine::DiskSpec> disks;  // the root disk first (kiln-disk0), then each --disk in order
  int root_disk = -1;
  std::vector<engine::ShareSpec> shares;
  std::vector<agent::MountRequest> mounts;  // mounts[i] mounts shares[i]
  std::vector<std::string> volume_args;     // volume_args[i]: the -v value behind shares[i], for errors
};

// kInvalidArgument (or the errno's category for a missing host path) with a one-line message that names
// the flag and its value.
Result<RunStorage> plan_run_storage(const std::vector<std::string>& disks, const std::string& root_disk,
                                    const std::vector<std::string>& volumes);

}  // namespace kiln::cli

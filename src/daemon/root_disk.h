// Root disks of persistent VMs: a sparse ext4 image built with `mkfs.ext4 -d` from the VM's root filesystem
// source (a directory, a rootfs tarball unpacked safely, an image from the store, another VM's disk, or
// Kiln's minimal busybox userland). The guest agent switch_roots into it. Blocking; any thread; distinct
// target paths may be built concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/error.h"
#include "daemon/state/vm_record.h"

namespace kiln::daemon {

struct RootDiskInputs {
  std::string scratch_dir;     // a private directory on the same filesystem (deleted by the caller)
  std::string busybox_binary;  // for RootSource::kDefault
  // For RootSource::kImage: the image's read-only EROFS root filesystem (pulled if needed).
  std::function<Result<std::string>(const std::string& reference)> image_rootfs;
  // For RootSource::kVm: the template VM's root disk path (its VM must not be running).
  std::function<Result<std::string>(const std::string& vm)> vm_root_disk;
};

// Builds `image_path` (must not exist) of `size_mib` from `source`. Errors: kInvalidArgument for a bad
// source (missing directory, not a tarball, hostile tarball, does not fit), others for host failures.
Result<void> build_root_disk(const std::string& image_path, uint64_t size_mib, const RootSource& source,
                             const RootDiskInputs& inputs);

}  // namespace kiln::daemon

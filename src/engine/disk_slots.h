// Disk slots of a running VM as its guest saw them: each virtio-blk device's read-only flag and size, read
// once at probe. What decides whether a disk may be swapped into a slot (VmInstance::swap_disk); engine-
// neutral, shared by every engine that swaps disks (and the fake). Plain data and pure checks; any thread.
#pragma once

#include <cstdint>
#include <vector>

#include "common/error.h"
#include "engine/engine.h"

namespace kiln::engine {

struct DiskSlot {
  bool read_only = false;
  uint64_t bytes = 0;  // the size the guest saw; 0: unknown (no disk can be swapped in)
};

// The slots of a VM launched from `spec`: a placeholder's size, or its disk file's size now. A clone of
// `from` (when given) saw its template's slot sizes instead.
std::vector<DiskSlot> disk_slots_of(const VmSpec& spec, const VmTemplate* from = nullptr);

// Checks that `disk` may go into slot `slot` of `slots`: a slot the VM has, the slot's read-only flag, a
// readable (and for a writable slot writable) regular file no larger than the slot. Returns the disk to put
// there: a placeholder (no path) gets the slot's size. kInvalidArgument or kFailedPrecondition saying why.
Result<DiskSpec> check_disk_for_slot(const std::vector<DiskSlot>& slots, size_t slot, const DiskSpec& disk);

}  // namespace kiln::engine

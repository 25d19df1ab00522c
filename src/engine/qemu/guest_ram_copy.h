// Copying a running QEMU's guest RAM out of its memfd (memory-backend-memfd, share=on) into a file, for an
// instant clone: the copy becomes a one-off template's memory file that the new VM maps private. QEMU's
// memfd is reached through /proc/<pid>/fd (the caller must be allowed to read the monitor's fds: the same
// user, or root). Call while the guest is paused, or the copy tears. Any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::engine::qemu {

// The guest RAM memfd of the QEMU process `pid`, opened read-only: the one memfd QEMU made for a memory
// backend of `bytes` bytes. kFailedPrecondition when it has none (its RAM is a file, e.g. a fork's private
// mapping of its template) or more than one.
Result<UniqueFd> open_guest_ram_memfd(pid_t pid, uint64_t bytes);

struct RamCopyStats {
  uint64_t bytes = 0;          // the file's size (the guest's RAM size)
  uint64_t data_bytes = 0;     // what was written: pages holding anything but zeros
  uint64_t scanned_bytes = 0;  // what was read (the memfd's allocated ranges)
};

// Writes `from`'s contents into `path` (created, must not exist; mode 0600: it holds the guest's secrets) as
// a sparse file: holes of the memfd (SEEK_DATA/SEEK_HOLE) and pages of zeros stay holes, so the file costs
// what the guest has written, and a VM mapping it private reads zeros there without a page of its own.
Result<RamCopyStats> copy_ram_sparse(int from, const std::string& path);

}  // namespace kiln::engine::qemu

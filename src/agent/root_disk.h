// Booting into a root disk: when the kernel command line says kiln.root=SERIAL, kiln-agent (PID 1, started
// from the initramfs) finds the virtio-blk disk with that serial, mounts it as ext4 and makes it `/`, the way
// busybox switch_root does, then carries on with the rest of its PID 1 setup from there. A disk that cannot
// be found or mounted is logged and reported to the host (HELLO_REPLY "root"); the agent keeps serving from
// the initramfs. Called once from prepare_system() on the agent's one thread, before any child exists.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "agent/protocol/messages.h"
#include "common/error.h"

namespace kiln::agent {

// The value of kiln.root= in a kernel command line (the contents of /proc/cmdline), if present.
std::optional<std::string> root_serial_from_cmdline(std::string_view cmdline);

// The device node (`dev_dir`/vdX) of the block device whose `sys_block`/vdX/serial is `serial`.
// kNotFound while there is none (virtio-blk may still be probing) or its node is not there yet.
Result<std::string> find_block_device(const std::string& sys_block, const std::string& dev_dir,
                                      std::string_view serial);

// Polls find_block_device in /sys/block and /dev until the disk appears or `wait` passed.
Result<std::string> wait_for_block_device(std::string_view serial, std::chrono::milliseconds wait);

// Removes everything under `dir_fd` that lives on the filesystem `device`, without following symlinks or
// entering other mounts (busybox switch_root's delete_contents). Best effort: failures are skipped.
void delete_same_filesystem_contents(int dir_fd, dev_t device);

// Waits up to `wait` for the disk, mounts it at /newroot, moves /dev, /proc and /sys into it, empties the
// initramfs and makes the disk `/` (chroot). Needs /proc, /sys and /dev mounted. Never fails: the status says
// what happened, and on failure `/` is still the initramfs.
RootDiskStatus switch_to_root_disk(std::string_view serial,
                                   std::chrono::milliseconds wait = std::chrono::seconds(2));

}  // namespace kiln::agent

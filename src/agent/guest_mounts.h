// The agent's filesystem duties after boot: MOUNT/UNMOUNT requests from the host (9p shares, extra disks),
// and, at power-off, remounting block-backed filesystems read-only so a root disk is left clean. The host
// never names a path relative to anything: targets are normalized by normalize_guest_path() first. PID 1
// only (these act on the whole guest); agent thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent/protocol/messages.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

// kFlushBlockDevice: a block device source's buffer cache is dropped (BLKFLSBUF) before the mount, for a
// disk that replaced another in the same slot under a running kernel (a VM forked from a template).
enum class MountFlush { kNone, kFlushBlockDevice };

// The request's target (and root, if any) made absolute and free of ".." (normalize_guest_path), before
// anything is mounted.
Result<void> normalize_mount_request(MountRequest& request, std::string_view what);

// mkdir -p of `request.target` (already normalized), then mount(2); with `root`, the target is placed
// inside it (resolve_mount_point). Errors carry the errno's category and name the filesystem and target.
Result<void> mount_in_guest(const MountRequest& request, MountFlush flush = MountFlush::kNone);

// MOUNT's options split into mount(2)'s flags (the words "ro", "nosuid", "noexec", ... and their opposites,
// later words winning) and the filesystem's data string (everything else, in order).
struct MountOptions {
  unsigned long flags = 0;
  std::string data;
};
MountOptions split_mount_options(std::string_view options);

// Where a mount goes inside a container's root: `target` (absolute) resolved as if `root` were "/", so
// symlinks and ".." cannot lead out of it; missing directories are made, and the last component as a
// directory or (directory=false) an empty file. Returns an O_PATH descriptor of the mount point; an existing
// one of the other kind is an error.
Result<UniqueFd> resolve_mount_point(const std::string& root, const std::string& target, bool directory);
// ioctl(BLKFLSBUF) on the block device node `device`: writes back and drops its cached blocks.
Result<void> flush_block_device(const std::string& device);
// umount(2) of a normalized target.
Result<void> unmount_in_guest(const std::string& target);

// One line of /proc/mounts, with the octal escapes (\040 for a space) undone.
struct MountEntry {
  std::string source;
  std::string target;
  std::string fstype;
  std::string options;
  bool operator==(const MountEntry&) const = default;
};
std::vector<MountEntry> parse_mounts(std::string_view proc_mounts);

// Filesystems on a block device (the source is a /dev node) that are mounted read-write, deepest first:
// what must become read-only before power-off so the journal is clean.
std::vector<std::string> writable_block_mounts(const std::vector<MountEntry>& mounts);

// Best effort, logged: remounts every writable_block_mounts() target read-only. Call after every other
// process is gone (an open-for-write file makes the remount fail with EBUSY) and after sync().
void remount_block_filesystems_read_only();

}  // namespace kiln::agent

#include "engine/disk_slots.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::engine {

std::vector<DiskSlot> disk_slots_of(const VmSpec& spec, const VmTemplate* from) {
  std::vector<DiskSlot> slots;
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const DiskSpec& disk = spec.disks[i];
    DiskSlot slot{.read_only = disk.read_only, .bytes = disk.placeholder_bytes};
    struct stat st {};
    if (!disk.path.empty()) slot.bytes = ::stat(disk.path.c_str(), &st) == 0 ? st.st_size : 0;
    if (from && i < from->disk_capacity().size() && from->disk_capacity()[i] > 0)
      slot.bytes = from->disk_capacity()[i];
    slots.push_back(slot);
  }
  return slots;
}

Result<DiskSpec> check_disk_for_slot(const std::vector<DiskSlot>& slots, size_t slot, const DiskSpec& disk) {
  if (slot >= slots.size()) {
    return Error::invalid_argument(
        fmt::format("the VM has no disk slot {} (it has {} disk slots)", slot, slots.size()));
  }
  const DiskSlot& into = slots[slot];
  std::string what = disk.path.empty() ? "a placeholder" : fmt::format("disk {}", disk.path);
  if (disk.read_only != into.read_only) {
    // The guest's block device took the flag at probe; a writable disk in a read-only slot could not be
    // written, and a read-only one in a writable slot would fail the guest's first write.
    return Error::failed_precondition(fmt::format(
        "disk slot {} is {} (its guest read that at boot); {} is {}", slot,
        into.read_only ? "read-only" : "writable", what, disk.read_only ? "read-only" : "writable"));
  }
  if (into.bytes == 0) {
    return Error::failed_precondition(
        fmt::format("the size the guest saw of disk slot {} is not known; cannot put {} there", slot, what));
  }
  DiskSpec wanted = disk;
  if (disk.path.empty()) {
    wanted.placeholder_bytes = into.bytes;
    return wanted;
  }
  struct stat st {};
  if (::stat(disk.path.c_str(), &st) != 0) return Error::last_os_error(fmt::format("disk {}", disk.path));
  if (!S_ISREG(st.st_mode))
    return Error::invalid_argument(fmt::format("disk {} is not a regular file", disk.path));
  if (::access(disk.path.c_str(), disk.read_only ? R_OK : R_OK | W_OK) != 0)
    return Error::last_os_error(fmt::format("disk {}", disk.path));
  if (static_cast<uint64_t>(st.st_size) > into.bytes) {
    // The guest would not see past the size it read at probe: the filesystem's end would be cut off.
    return Error::failed_precondition(fmt::format("disk {} is {} bytes, larger than disk slot {} ({} bytes)",
                                                  disk.path, st.st_size, slot, into.bytes));
  }
  wanted.placeholder_bytes = 0;
  return wanted;
}

}  // namespace kiln::engine

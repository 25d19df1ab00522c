#include "agent/root_disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr const char* kNewRoot = "/newroot";
constexpr auto kPollInterval = std::chrono::milliseconds(50);

struct DirCloser {
  void operator()(DIR* dir) const { (void)::closedir(dir); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\0')) text.pop_back();
  return text;
}

// The mount points the rest of PID 1 setup and every userland expect; created on the disk if it lacks them.
struct NeededDir {
  const char* name;
  mode_t mode;
};
constexpr NeededDir kNeededDirs[] = {
    {"proc", 0555}, {"sys", 0555}, {"dev", 0755}, {"tmp", 01777}, {"run", 0755},
};
// Already mounted in the initramfs; they move into the new root rather than being mounted again.
constexpr const char* kMovedMounts[] = {"/dev", "/proc", "/sys"};

Result<void> create_needed_dirs() {
  for (const NeededDir& dir : kNeededDirs) {
    std::string path = fmt::format("{}/{}", kNewRoot, dir.name);
    if (::mkdir(path.c_str(), dir.mode) != 0 && errno != EEXIST) {
      return Error::last_os_error(fmt::format("mkdir {} on the root disk", path));
    }
  }
  return ok();
}

// Moves /dev, /proc and /sys under `kNewRoot`; on failure moves back what already moved.
Result<void> move_system_mounts() {
  for (size_t i = 0; i < std::size(kMovedMounts); ++i) {
    std::string target = std::string(kNewRoot) + kMovedMounts[i];
    if (::mount(kMovedMounts[i], target.c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      Error error = Error::last_os_error(fmt::format("move {} to {}", kMovedMounts[i], target));
      while (i-- > 0) {
        std::string moved = std::string(kNewRoot) + kMovedMounts[i];
        (void)::mount(moved.c_str(), kMovedMounts[i], nullptr, MS_MOVE, nullptr);
      }
      return error;
    }
  }
  return ok();
}

Result<void> mount_new_root(const std::string& device) {
  if (::mkdir(kNewRoot, 0755) != 0 && errno != EEXIST)
    return Error::last_os_error(fmt::format("mkdir {}", kNewRoot));
  // noinit_itable: Kiln's root disks are sparse files made with lazy_itable_init, whose unused inode tables
  // read as zeros already; the kernel's lazy-init thread would write those zeros out, allocating ~16 MiB
  // of host disk per GiB and burning guest CPU after every boot.
  if (::mount(device.c_str(), kNewRoot, "ext4", 0, "noinit_itable") != 0) {
    Error error = Error::last_os_error(fmt::format("mount {} (ext4) on {}", device, kNewRoot));
    (void)::rmdir(kNewRoot);
    return error;
  }
  if (auto created = create_needed_dirs(); !created) {
    (void)::umount(kNewRoot);
    (void)::rmdir(kNewRoot);
    return created;
  }
  if (auto moved = move_system_mounts(); !moved) {
    (void)::umount(kNewRoot);
    (void)::rmdir(kNewRoot);
    return moved;
  }
  return ok();
}

// The switch_root sequence proper. Past the first step there is no way back, so failures are only reported.
Result<void> enter_new_root() {
  struct stat initramfs {};
  if (::stat("/", &initramfs) != 0) return Error::last_os_error("stat /");
  if (::chdir(kNewRoot) != 0) return Error::last_os_error(fmt::format("chdir {}", kNewRoot));
  // The initramfs stays in RAM for the VM's life unless emptied; the agent itself runs from memory.
  if (UniqueFd root(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)); root) {
    delete_same_filesystem_contents(root.get(), initramfs.st_dev);
  }
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0)
    return Error::last_os_error("move the root disk to /");
  if (::chroot(".") != 0) return Error::last_os_error("chroot into the root disk");
  if (::chdir("/") != 0) return Error::last_os_error("chdir / on the root disk");
  return ok();
}

}  // namespace

Result<std::string> wait_for_block_device(std::string_view serial, std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto device = find_block_device("/sys/block", "/dev", serial);
    if (device || device.error().category() != ErrorCategory::kNotFound) return device;
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error::not_found(
          fmt::format("no block device with serial {} appeared within {} ms", serial, wait.count()));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::optional<std::string> root_serial_from_cmdline(std::string_view cmdline) {
  constexpr std::string_view kKey = "kiln.root=";
  std::optional<std::string> found;
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t end = cmdline.find_first_of(" \t\n", start);
    if (end == std::string_view::npos) end = cmdline.size();
    std::string_view word = cmdline.substr(start, end - start);
    // The last one wins, as with every kernel parameter (extra_cmdline may override Kiln's own).
    if (word.starts_with(kKey)) found = std::string(word.substr(kKey.size()));
    start = end + 1;
  }
  if (found && found->empty()) return std::nullopt;
  return found;
}

Result<std::string> find_block_device(const std::string& sys_block, const std::string& dev_dir,
                                      std::string_view serial) {
  DirHandle dir(::opendir(sys_block.c_str()));
  if (!dir) return Error::last_os_error(fmt::format("open {}", sys_block));
  while (const dirent* entry = ::readdir(dir.get())) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    // Disks without a serial attribute (not virtio-blk) simply do not match.
    auto text = read_file(fmt::format("{}/{}/serial", sys_block, name), 4096);
    if (!text || trimmed(std::move(*text)) != serial) continue;
    std::string node = fmt::format("{}/{}", dev_dir, name);
    if (::access(node.c_str(), F_OK) != 0) {
      return Error::not_found(
          fmt::format("block device {} (serial {}) has no node {} yet", name, serial, node));
    }
    return node;
  }
  return Error::not_found(fmt::format("no block device with serial {}", serial));
}

void delete_same_filesystem_contents(int dir_fd, dev_t device) {
  // Names first, deletions after: removing entries while readdir() walks a tmpfs/ramfs directory (the
  // initramfs) can make it skip others.
  std::vector<std::string> names;
  {
    UniqueFd listing(::dup(dir_fd));
    if (!listing) return;
    DirHandle dir(::fdopendir(listing.get()));
    if (!dir) return;
    (void)listing.release();  // the DIR owns it now
    ::rewinddir(dir.get());   // a dup shares the caller's read position
    while (const dirent* entry = ::readdir(dir.get())) {
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
  }
  for (const std::string& name : names) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    // A mount point reports the mounted filesystem's device: this is what keeps us out of the new root.
    if (st.st_dev != device) continue;
    if (S_ISDIR(st.st_mode)) {
      UniqueFd child(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (child) delete_same_filesystem_contents(child.get(), device);
      (void)::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);
    } else {
      (void)::unlinkat(dir_fd, name.c_str(), 0);
    }
  }
}

RootDiskStatus switch_to_root_disk(std::string_view serial, std::chrono::milliseconds wait) {
  RootDiskStatus status{.serial = std::string(serial)};
  auto fail = [&](const Error& error) {
    status.error = error.message();
    log::error("cannot boot into the root disk; serving from the initramfs",
               {{"serial", status.serial}, {"device", status.device}, {"error", status.error}});
    return status;
  };
  auto device = wait_for_block_device(serial, wait);
  if (!device) return fail(device.error());
  status.device = *device;
  if (auto mounted = mount_new_root(status.device); !mounted) return fail(mounted.error());
  if (auto entered = enter_new_root(); !entered) return fail(entered.error());
  status.mounted = true;
  log::info("switched to the root disk", {{"device", status.device}, {"serial", status.serial}});
  return status;
}

}  // namespace kiln::agent

#include "cli/vm_run_storage.h"

#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <set>

namespace kiln::cli {

namespace {

// The absolute, symlink-free path of an existing file of the wanted kind: QEMU resolves relative paths
// against its own cwd, and an error now reads better than QEMU's later.
Result<std::string> resolve_host_path(const std::string& path, bool directory, std::string_view flag) {
  char resolved[PATH_MAX];
  if (path.empty()) return Error::invalid_argument(fmt::format("{}: empty path", flag));
  if (::realpath(path.c_str(), resolved) == nullptr)
    return Error::last_os_error(fmt::format("{} {}", flag, path));
  struct stat st {};
  if (::stat(resolved, &st) != 0) return Error::last_os_error(fmt::format("{} {}", flag, path));
  if (directory && !S_ISDIR(st.st_mode)) {
    return Error::invalid_argument(fmt::format("{} {}: not a directory", flag, path));
  }
  if (!directory && !S_ISREG(st.st_mode)) {
    return Error::invalid_argument(fmt::format("{} {}: not a regular file (a raw disk image)", flag, path));
  }
  return std::string(resolved);
}

struct Volume {
  std::string host_path;
  std::string guest_path;
  bool read_only = false;
};

// HOSTDIR:GUESTPATH[:ro|:rw]. GUESTPATH is absolute, or a bare name for kSharedFoldersRoot/NAME.
Result<Volume> parse_volume(std::string_view value) {
  auto usage = [&] {
    return Error::invalid_argument(fmt::format("-v {}: expected HOSTDIR:GUESTPATH[:ro]", value));
  };
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t colon = value.find(':', start);
    parts.push_back(value.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty()) return usage();
  Volume volume;
  if (parts.size() == 3) {
    if (parts[2] != "ro" && parts[2] != "rw") {
      return Error::invalid_argument(fmt::format("-v {}: unknown mode \"{}\" (ro or rw)", value, parts[2]));
    }
    volume.read_only = parts[2] == "ro";
  }
  volume.host_path = KILN_TRY(resolve_host_path(std::string(parts[0]), /*directory=*/true, "-v"));
  std::string_view guest = parts[1];
  if (guest.find('/') == std::string_view::npos) {
    if (guest == "." || guest == "..") return usage();
    volume.guest_path = fmt::format("{}/{}", kSharedFoldersRoot, guest);
  } else {
    auto normalized = agent::normalize_guest_path(guest, "guest path");
    if (!normalized) return normalized.error().with_context(fmt::format("-v {}", value));
    volume.guest_path = std::move(*normalized);
  }
  return volume;
}

}  // namespace

Result<RunStorage> plan_run_storage(const std::vector<std::string>& disks, const std::string& root_disk,
                                    const std::vector<std::string>& volumes) {
  RunStorage storage;
  if (!root_disk.empty()) {
    storage.disks.push_back({KILN_TRY(resolve_host_path(root_disk, false, "--root-disk")), false});
    storage.root_disk = 0;
  }
  for (const auto& disk : disks)
    storage.disks.push_back({KILN_TRY(resolve_host_path(disk, false, "--disk")), false});
  std::set<std::string> targets;
  for (const auto& value : volumes) {
    Volume volume = KILN_TRY(parse_volume(value));
    if (!targets.insert(volume.guest_path).second) {
      return Error::invalid_argument(fmt::format("-v {}: {} is already a volume", value, volume.guest_path));
    }
    std::string tag = fmt::format("kilnshare{}", storage.shares.size());
    storage.shares.push_back({tag, volume.host_path, volume.read_only});
    storage.mounts.push_back({.source = tag,
                              .target = volume.guest_path,
                              .fstype = "9p",
                              .options = std::string(agent::kShareMountOptions),
                              .read_only = volume.read_only});
    storage.volume_args.push_back(value);
  }
  return storage;
}

}  // namespace kiln::cli

#include "agent/guest_mounts.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "agent/root_disk.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr auto kDiskWait = std::chrono::seconds(5);

Result<void> make_directories(const std::string& path) {
  // `path` is normalized and absolute: every '/' after the first starts a component.
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error::last_os_error(fmt::format("mkdir {}", prefix));
    }
    if (slash == std::string::npos) return ok();
  }
}

// /proc/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      std::string_view digits = field.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

bool has_option(std::string_view options, std::string_view wanted) {
  size_t start = 0;
  while (start <= options.size()) {
    size_t end = options.find(',', start);
    if (end == std::string_view::npos) end = options.size();
    if (options.substr(start, end - start) == wanted) return true;
    start = end + 1;
  }
  return false;
}

// overlayfs needs its upperdir and workdir to exist; on a fresh writable layer they do not yet.
Result<void> make_overlay_directories(std::string_view options) {
  size_t start = 0;
  while (start < options.size()) {
    size_t end = options.find(',', start);
    if (end == std::string_view::npos) end = options.size();
    std::string_view option = options.substr(start, end - start);
    for (std::string_view key : {"upperdir=", "workdir="}) {
      if (!option.starts_with(key)) continue;
      std::string path = KILN_TRY(normalize_guest_path(option.substr(key.size()), "overlay directory"));
      KILN_TRY(make_directories(path));
    }
    start = end + 1;
  }
  return ok();
}

}  // namespace

Result<void> flush_block_device(const std::string& device) {
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", device));
  if (::ioctl(fd.get(), BLKFLSBUF, 0) != 0)
    return Error::last_os_error(fmt::format("BLKFLSBUF on {}", device));
  return ok();
}

Result<void> mount_in_guest(const MountRequest& request, MountFlush flush) {
  KILN_TRY(make_directories(request.target));
  std::string source = request.source;
  if (source.starts_with(kSerialSourcePrefix)) {
    // Device names follow probe order, which the host does not control; serials are what it chose.
    source = KILN_TRY(wait_for_block_device(source.substr(kSerialSourcePrefix.size()), kDiskWait));
  }
  if (flush == MountFlush::kFlushBlockDevice && source.starts_with("/dev/")) {
    KILN_TRY(flush_block_device(source));
  }
  if (request.fstype == "overlay") KILN_TRY(make_overlay_directories(request.options));
  unsigned long flags = request.read_only ? MS_RDONLY : 0;
  const char* data = request.options.empty() ? nullptr : request.options.c_str();
  if (::mount(source.c_str(), request.target.c_str(), request.fstype.c_str(), flags, data) != 0) {
    return Error::last_os_error(fmt::format("mount {} {} on {}", request.fstype, source, request.target));
  }
  log::info("mounted", {{"source", source},
                        {"target", request.target},
                        {"fstype", request.fstype},
                        {"read_only", request.read_only ? "yes" : "no"}});
  return ok();
}

Result<void> unmount_in_guest(const std::string& target) {
  if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) != 0)
    return Error::last_os_error(fmt::format("umount {}", target));
  log::info("unmounted", {{"target", target}});
  return ok();
}

std::vector<MountEntry> parse_mounts(std::string_view proc_mounts) {
  std::vector<MountEntry> out;
  size_t start = 0;
  while (start < proc_mounts.size()) {
    size_t end = proc_mounts.find('\n', start);
    if (end == std::string_view::npos) end = proc_mounts.size();
    std::string_view line = proc_mounts.substr(start, end - start);
    start = end + 1;
    std::vector<std::string_view> fields;
    size_t at = 0;
    while (at < line.size() && fields.size() < 4) {
      size_t space = line.find(' ', at);
      if (space == std::string_view::npos) space = line.size();
      if (space > at) fields.push_back(line.substr(at, space - at));
      at = space + 1;
    }
    if (fields.size() < 4) continue;
    out.push_back({unescape(fields[0]), unescape(fields[1]), unescape(fields[2]), unescape(fields[3])});
  }
  return out;
}

std::vector<std::string> writable_block_mounts(const std::vector<MountEntry>& mounts) {
  std::vector<std::string> out;
  // Later lines may sit on top of earlier ones: remount them first.
  for (auto entry = mounts.rbegin(); entry != mounts.rend(); ++entry) {
    if (entry->source.starts_with("/dev/") && has_option(entry->options, "rw")) out.push_back(entry->target);
  }
  return out;
}

void remount_block_filesystems_read_only() {
  auto text = read_file("/proc/mounts", size_t{1} << 20);
  if (!text) {
    log::warn("cannot list mounts to remount them read-only", {{"error", text.error().message()}});
    return;
  }
  for (const std::string& target : writable_block_mounts(parse_mounts(*text))) {
    if (::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      log::warn("remount read-only failed",
                {{"error", Error::last_os_error(fmt::format("remount {}", target)).message()}});
    } else {
      log::info("remounted read-only", {{"target", target}});
    }
  }
}

}  // namespace kiln::agent

#include "agent/guest_mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "agent/copy_tree.h"
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

// openat2 with RESOLVE_IN_ROOT: `path` (relative) looked up as if `root_fd` were "/".
UniqueFd open_in_root(int root_fd, const std::string& path, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how)));
}

std::vector<std::string> path_components(std::string_view absolute) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < absolute.size()) {
    size_t slash = absolute.find('/', start);
    if (slash == std::string_view::npos) slash = absolute.size();
    if (slash > start) parts.emplace_back(absolute.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

std::string fd_path(int fd) {
  return fmt::format("/proc/self/fd/{}", fd);
}

bool directory_is_empty(int dir_fd) {
  UniqueFd listing(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) return false;
  DIR* dir = ::fdopendir(listing.release());
  if (dir == nullptr) return false;
  bool empty = true;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(dir);
  return empty;
}

// Docker's copy-up: an empty volume mounted where the image has files starts with a copy of them, and its top
// directory takes the image directory's owner and mode.
Result<void> copy_up(const std::string& source, int root_fd, const std::string& relative_target) {
  UniqueFd into(::open(source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!into) return Error::last_os_error(fmt::format("open {}", source));
  UniqueFd from = open_in_root(root_fd, relative_target, O_RDONLY | O_DIRECTORY);
  if (!from) return ok();  // nothing there to copy (or not a directory): the volume stays as it is
  if (!directory_is_empty(into.get()) || directory_is_empty(from.get())) return ok();
  KILN_TRY_CONTEXT(copy_directory_contents(from.get(), into.get()),
                   fmt::format("copy /{} into the volume", relative_target));
  struct stat st {};
  if (::fstat(from.get(), &st) != 0) return Error::last_os_error(fmt::format("stat /{}", relative_target));
  if (::fchown(into.get(), st.st_uid, st.st_gid) != 0 || ::fchmod(into.get(), st.st_mode & 07777) != 0)
    return Error::last_os_error(fmt::format("give {} the owner and mode of /{}", source, relative_target));
  return ok();
}

Result<void> mount_inside_root(const MountRequest& request, const MountOptions& options) {
  bool bind = request.fstype == "bind";
  bool directory = true;
  if (bind) {
    struct stat st {};
    if (::stat(request.source.c_str(), &st) != 0)
      return Error::last_os_error(fmt::format("bind source {}", request.source));
    directory = S_ISDIR(st.st_mode);
  }
  UniqueFd point = KILN_TRY(resolve_mount_point(request.root, request.target, directory));
  if (request.copy_up && directory) {
    UniqueFd root_fd(::open(request.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd) return Error::last_os_error(fmt::format("open {}", request.root));
    KILN_TRY(copy_up(request.source, root_fd.get(), request.target.substr(1)));
  }
  // Through the resolved descriptor: a path string could be re-resolved through a symlink swapped in since.
  unsigned long flags = options.flags | (request.read_only ? MS_RDONLY : 0);
  const char* data = options.data.empty() ? nullptr : options.data.c_str();
  std::string place = fd_path(point.get());
  if (bind) {
    if (::mount(request.source.c_str(), place.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return Error::last_os_error(fmt::format("bind {} on {}", request.source, request.target));
    // A bind takes its flags (read-only, nosuid, ...) only from a remount of the new mount, which the old
    // descriptor does not name: it is the directory underneath.
    if ((flags & ~MS_REC) != 0) {
      UniqueFd mounted = KILN_TRY(resolve_mount_point(request.root, request.target, directory));
      std::string top = fd_path(mounted.get());
      if (::mount(nullptr, top.c_str(), nullptr, MS_BIND | MS_REMOUNT | flags, nullptr) != 0)
        return Error::last_os_error(fmt::format("make the bind on {} {}", request.target,
                                                request.read_only ? "read-only" : "take its options"));
    }
  } else if (::mount(request.source.c_str(), place.c_str(), request.fstype.c_str(), flags, data) != 0) {
    return Error::last_os_error(
        fmt::format("mount {} {} on {}", request.fstype, request.source, request.target));
  }
  log::info("mounted in root", {{"source", request.source},
                                {"root", request.root},
                                {"target", request.target},
                                {"fstype", request.fstype},
                                {"read_only", request.read_only ? "yes" : "no"}});
  return ok();
}

}  // namespace

Result<void> normalize_mount_request(MountRequest& request, std::string_view what) {
  request.target = KILN_TRY(normalize_guest_path(request.target, fmt::format("{} target", what)));
  if (!request.root.empty()) {
    request.root = KILN_TRY(normalize_guest_path(request.root, fmt::format("{} root", what)));
    if (request.target == "/")
      return Error::invalid_argument(
          fmt::format("{}: cannot mount over the root {} itself", what, request.root));
  }
  return ok();
}

MountOptions split_mount_options(std::string_view options) {
  struct FlagWord {
    std::string_view word;
    unsigned long flag;
    bool set;
  };
  static constexpr std::array<FlagWord, 18> kWords = {{
      {"ro", MS_RDONLY, true},
      {"rw", MS_RDONLY, false},
      {"nosuid", MS_NOSUID, true},
      {"suid", MS_NOSUID, false},
      {"nodev", MS_NODEV, true},
      {"dev", MS_NODEV, false},
      {"noexec", MS_NOEXEC, true},
      {"exec", MS_NOEXEC, false},
      {"noatime", MS_NOATIME, true},
      {"atime", MS_NOATIME, false},
      {"nodiratime", MS_NODIRATIME, true},
      {"diratime", MS_NODIRATIME, false},
      {"relatime", MS_RELATIME, true},
      {"norelatime", MS_RELATIME, false},
      {"strictatime", MS_STRICTATIME, true},
      {"sync", MS_SYNCHRONOUS, true},
      {"async", MS_SYNCHRONOUS, false},
      {"dirsync", MS_DIRSYNC, true},
  }};
  MountOptions out;
  size_t start = 0;
  while (start < options.size()) {
    size_t end = options.find(',', start);
    if (end == std::string_view::npos) end = options.size();
    std::string_view option = options.substr(start, end - start);
    start = end + 1;
    if (option.empty()) continue;
    auto word =
        std::find_if(kWords.begin(), kWords.end(), [&](const FlagWord& w) { return w.word == option; });
    if (word == kWords.end()) {
      if (!out.data.empty()) out.data += ',';
      out.data += option;
    } else if (word->set) {
      out.flags |= word->flag;
    } else {
      out.flags &= ~word->flag;
    }
  }
  return out;
}

Result<UniqueFd> resolve_mount_point(const std::string& root, const std::string& target, bool directory) {
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return Error::last_os_error(fmt::format("open {}", root));
  std::vector<std::string> parts = path_components(target);
  if (parts.empty()) return Error::invalid_argument(fmt::format("cannot mount over {} itself", root));
  std::string prefix;
  int links_followed = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    std::string parent = prefix.empty() ? "." : prefix;
    prefix += (prefix.empty() ? "" : "/") + parts[i];
    UniqueFd found = open_in_root(root_fd.get(), prefix, O_PATH);
    if (!found && errno == ENOENT) {
      UniqueFd parent_fd = open_in_root(root_fd.get(), parent, O_PATH | O_DIRECTORY);
      if (!parent_fd) return Error::last_os_error(fmt::format("open {} in {}", parent, root));
      // A dangling symlink (an image's /data -> /srv/data with no /srv): follow it by hand, inside the root,
      // and make what it names, as Docker does.
      std::array<char, 4096> link{};
      ssize_t length = ::readlinkat(parent_fd.get(), parts[i].c_str(), link.data(), link.size());
      if (length > 0 && static_cast<size_t>(length) < link.size()) {
        if (++links_followed > 40)
          return Error::from_errno(fmt::format("resolve {} in {}", target, root), ELOOP);
        std::string_view to(link.data(), static_cast<size_t>(length));
        std::vector<std::string> rest = path_components(to);
        if (!to.starts_with('/')) {
          std::vector<std::string> base(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(i));
          base.insert(base.end(), rest.begin(), rest.end());
          rest = std::move(base);
        }
        rest.insert(rest.end(), parts.begin() + static_cast<std::ptrdiff_t>(i) + 1, parts.end());
        // ".." clamps at the root, as RESOLVE_IN_ROOT does.
        parts.clear();
        for (auto& part : rest) {
          if (part == "..") {
            if (!parts.empty()) parts.pop_back();
          } else if (part != ".") {
            parts.push_back(std::move(part));
          }
        }
        if (parts.empty()) return Error::invalid_argument(fmt::format("cannot mount over {} itself", root));
        prefix.clear();
        i = static_cast<size_t>(-1);  // start over on the rewritten path
        continue;
      }
      if (!last || directory) {
        if (::mkdirat(parent_fd.get(), parts[i].c_str(), 0755) != 0 && errno != EEXIST)
          return Error::last_os_error(fmt::format("make the mount point /{} in {}", prefix, root));
      } else {
        UniqueFd made(
            ::openat(parent_fd.get(), parts[i].c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!made) return Error::last_os_error(fmt::format("make the mount point /{} in {}", prefix, root));
      }
      found = open_in_root(root_fd.get(), prefix, O_PATH);
    }
    if (!found) return Error::last_os_error(fmt::format("open /{} in {}", prefix, root));
    struct stat st {};
    if (::fstat(found.get(), &st) != 0)
      return Error::last_os_error(fmt::format("stat /{} in {}", prefix, root));
    if (!last) {
      if (!S_ISDIR(st.st_mode))
        return Error::failed_precondition(fmt::format("/{} in {} is not a directory", prefix, root));
      continue;
    }
    if (directory && !S_ISDIR(st.st_mode))
      return Error::failed_precondition(
          fmt::format("cannot mount a directory on /{}: it is not a directory in the container", prefix));
    if (!directory && S_ISDIR(st.st_mode))
      return Error::failed_precondition(
          fmt::format("cannot mount a file on /{}: it is a directory in the container", prefix));
    return found;
  }
  return Error::internal("unreachable");
}

Result<void> flush_block_device(const std::string& device) {
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", device));
  if (::ioctl(fd.get(), BLKFLSBUF, 0) != 0)
    return Error::last_os_error(fmt::format("BLKFLSBUF on {}", device));
  return ok();
}

Result<void> mount_in_guest(const MountRequest& request, MountFlush flush) {
  MountOptions options = split_mount_options(request.options);
  if (!request.root.empty()) return mount_inside_root(request, options);
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
  unsigned long flags = options.flags | (request.read_only ? MS_RDONLY : 0);
  const char* data = options.data.empty() ? nullptr : options.data.c_str();
  if (request.fstype == "bind") {
    if (::mount(source.c_str(), request.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return Error::last_os_error(fmt::format("bind {} on {}", source, request.target));
    if (flags != 0 &&
        ::mount(nullptr, request.target.c_str(), nullptr, MS_BIND | MS_REMOUNT | flags, nullptr) != 0)
      return Error::last_os_error(fmt::format("set the options of the bind on {}", request.target));
    return ok();
  }
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

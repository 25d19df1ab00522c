#include "agent/file_builtins.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "agent/container_setup.h"
#include "common/clean_path.h"
#include "common/errno_text.h"
#include "common/tar.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

constexpr int kMaxSymlinkFollows = 255;  // as Go's FollowSymlinkInScope
constexpr size_t kCopyChunk = 128 * 1024;

// A builtin's failure: the exit code and the sentence for stderr.
struct Failure {
  BuiltinExit exit;
  std::string message;
};
template <typename T>
using Outcome = std::variant<T, Failure>;

Failure os_failure(std::string_view what, int errnum) {
  return {errnum == ENOENT ? BuiltinExit::kNotFound : BuiltinExit::kFailed,
          fmt::format("{}: {}", what, errno_text(errnum))};
}

Result<void> write_stdout(std::string_view data) {
  return write_all(STDOUT_FILENO, data);
}

// filepath.Clean for a relative archive name; "" for the directory itself. May start with "../".
std::string clean_relative(std::string_view name) {
  std::vector<std::string_view> parts;
  int ups = 0;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) slash = name.size();
    std::string_view part = name.substr(start, slash - start);
    if (part == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      } else {
        ++ups;
      }
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = slash + 1;
  }
  std::string out;
  for (int i = 0; i < ups; ++i) out += out.empty() ? ".." : "/..";
  for (auto part : parts) out += (out.empty() ? "" : "/") + std::string(part);
  return out;
}

std::string base_name(const std::string& clean) {
  if (clean == "/") return "/";
  return clean.substr(clean.rfind('/') + 1);
}

// dockerd's absPath: the path made absolute and cleaned, keeping a trailing "/" or "/." (which make the last
// component resolve through a symlink).
std::string absolute_path(std::string_view path) {
  std::string clean = clean_absolute_path(path);
  if (clean != "/" && (path.ends_with("/") || path.ends_with("/.")))
    clean += path.ends_with("/.") ? "/." : "/";
  return clean;
}

// The path a symlink chain leads to, resolved as if the process's root were the container's (as dockerd's
// FollowSymlinkInScope: missing components are kept as named).
std::string resolve_in_root(const std::string& path) {
  std::vector<std::string> pending;
  std::string rest = clean_absolute_path(path);
  size_t start = 1;
  while (start <= rest.size()) {
    size_t slash = rest.find('/', start);
    if (slash == std::string::npos) slash = rest.size();
    if (slash > start) pending.push_back(rest.substr(start, slash - start));
    start = slash + 1;
  }
  std::reverse(pending.begin(), pending.end());
  std::string resolved;
  int follows = 0;
  while (!pending.empty()) {
    std::string part = std::move(pending.back());
    pending.pop_back();
    if (part == "." || part.empty()) continue;
    if (part == "..") {
      resolved = resolved.empty() ? "" : resolved.substr(0, resolved.rfind('/'));
      continue;
    }
    std::string next = resolved + "/" + part;
    char target[4096];
    ssize_t n = ::readlink(next.c_str(), target, sizeof target);
    if (n < 0 || ++follows > kMaxSymlinkFollows) {
      resolved = next;
      continue;
    }
    std::string_view link(target, static_cast<size_t>(n));
    if (link.starts_with('/')) resolved.clear();
    std::vector<std::string> parts;
    size_t from = 0;
    while (from <= link.size()) {
      size_t slash = link.find('/', from);
      if (slash == std::string_view::npos) slash = link.size();
      if (slash > from) parts.emplace_back(link.substr(from, slash - from));
      from = slash + 1;
    }
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) pending.push_back(*it);
  }
  return resolved.empty() ? "/" : resolved;
}

// Go's time.RFC3339Nano in UTC: fraction without trailing zeros, none when zero.
std::string rfc3339_nano(const timespec& time) {
  std::tm utc{};
  ::gmtime_r(&time.tv_sec, &utc);
  char date[32];
  (void)std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string out = date;
  if (time.tv_nsec != 0) {
    std::string fraction = fmt::format("{:09d}", time.tv_nsec);
    while (fraction.back() == '0') fraction.pop_back();
    out += "." + fraction;
  }
  return out + "Z";
}

Outcome<std::string> stat_json(const std::string& requested) {
  std::string path = absolute_path(requested);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return os_failure(fmt::format("lstat {}", path), errno);
  std::string link_target;
  if (S_ISLNK(st.st_mode)) link_target = resolve_in_root(path);
  nlohmann::ordered_json stat = {{"name", base_name(clean_absolute_path(path))},
                                 {"size", st.st_size},
                                 {"mode", tar::go_file_mode(st.st_mode)},
                                 {"mtime", rfc3339_nano(st.st_mtim)},
                                 {"linkTarget", link_target}};
  return stat.dump();
}

std::optional<std::string> read_xattr(const std::string& path, const char* name) {
  char value[4096];
  ssize_t n = ::lgetxattr(path.c_str(), name, value, sizeof value);
  if (n < 0) return std::nullopt;
  return std::string(value, static_cast<size_t>(n));
}

// Paths dockerd keeps in a container's init layer or bind-mounts (/etc/hosts, ...), and the mount points
// Kiln's container setup creates (/proc, /sys, /dev): never part of the container's changes.
bool in_init_layer(const std::string& path) {
  static const std::set<std::string> kInitLayer = {
      "/dev", "/proc", "/sys", "/.dockerenv", "/etc/hosts", "/etc/mtab", "/etc/hostname", "/etc/resolv.conf"};
  return kInitLayer.count(path) > 0;
}

bool is_whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

bool is_opaque(const std::string& path) {
  for (const char* name : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
    if (read_xattr(path, name) == "y") return true;
  }
  return false;
}

// Writes a tree as dockerd's archive package does: a walk in name order, directories named with a trailing
// '/', hard links (files seen before with the same inode) as link entries, security.capability kept.
class TreeWriter {
 public:
  explicit TreeWriter(bool stay_on_device, bool overlay_layer = false)
      : stay_on_device_(stay_on_device), overlay_layer_(overlay_layer) {}

  // `path` on disk, named `name` in the archive ("" for the root of an export: not written itself).
  Result<void> add(const std::string& path, const std::string& name) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return ok();  // gone since it was listed
      return Error::last_os_error(fmt::format("lstat {}", path));
    }
    if (!device_) device_ = st.st_dev;
    if (overlay_layer_ && !name.empty()) {
      // An overlay upper directory as an image layer (image-spec layer.md "Whiteouts"): a whiteout device
      // becomes ".wh.NAME", an opaque directory gets ".wh..wh..opq" inside.
      if (in_init_layer("/" + name)) return ok();
      if (is_whiteout(st)) {
        size_t slash = name.rfind('/');
        std::string whiteout = slash == std::string::npos
                                   ? ".wh." + name
                                   : name.substr(0, slash + 1) + ".wh." + name.substr(slash + 1);
        return write_stdout(
            tar::encode_header({.name = whiteout, .mode = 0, .mtime_sec = st.st_mtim.tv_sec}));
      }
    }
    if (!name.empty()) KILN_TRY(write_entry(path, name, st));
    if (!S_ISDIR(st.st_mode)) return ok();
    if (overlay_layer_ && !name.empty() && is_opaque(path))
      KILN_TRY(
          write_stdout(tar::encode_header({.name = name + "/.wh..wh..opq", .mtime_sec = st.st_mtim.tv_sec})));
    if (stay_on_device_ && st.st_dev != *device_) return ok();  // a mount inside: not part of this tree
    std::vector<std::string> children = KILN_TRY(list(path));
    for (const auto& child : children) {
      std::string child_path = path == "/" ? "/" + child : path + "/" + child;
      KILN_TRY(add(child_path, name.empty() ? child : (name == "/" ? "" : name) + "/" + child));
    }
    return ok();
  }

  Result<void> finish() { return write_stdout(tar::end_of_archive()); }

  static Result<std::vector<std::string>> list(const std::string& path) {
    DIR* dir = ::opendir(path.c_str());
    if (!dir) return Error::last_os_error(fmt::format("open {}", path));
    std::vector<std::string> names;
    while (dirent* entry = ::readdir(dir)) {
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  Result<void> write_entry(const std::string& path, const std::string& name, const struct stat& st) {
    tar::Header header{.name = name,
                       .mode = st.st_mode & 07777,
                       .uid = st.st_uid,
                       .gid = st.st_gid,
                       .mtime_sec = st.st_mtim.tv_sec};
    bool content = false;
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR:
        header.type = tar::EntryType::kDirectory;
        if (!header.name.ends_with('/')) header.name += "/";
        break;
      case S_IFLNK: {
        header.type = tar::EntryType::kSymlink;
        std::string target(4096, '\0');
        ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
        if (n < 0) return Error::last_os_error(fmt::format("readlink {}", path));
        target.resize(static_cast<size_t>(n));
        header.link_name = target;
        break;
      }
      case S_IFREG:
        if (st.st_nlink > 1) {
          auto [it, inserted] = links_.emplace(std::pair{st.st_dev, st.st_ino}, name);
          if (!inserted) {
            header.type = tar::EntryType::kHardLink;
            header.link_name = it->second;
            break;
          }
        }
        header.type = tar::EntryType::kRegular;
        header.size = static_cast<uint64_t>(st.st_size);
        content = true;
        break;
      case S_IFCHR:
      case S_IFBLK:
        header.type = S_ISCHR(st.st_mode) ? tar::EntryType::kCharDevice : tar::EntryType::kBlockDevice;
        header.dev_major = major(st.st_rdev);
        header.dev_minor = minor(st.st_rdev);
        break;
      case S_IFIFO:
        header.type = tar::EntryType::kFifo;
        break;
      default:
        return ok();  // sockets: Go's archive/tar cannot hold them, dockerd skips them
    }
    if (auto capability = read_xattr(path, "security.capability"))
      header.xattrs["security.capability"] = *capability;
    if (!content) return write_stdout(tar::encode_header(header));
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Error::last_os_error(fmt::format("open {}", path));
    KILN_TRY(write_stdout(tar::encode_header(header)));
    std::string buffer(kCopyChunk, '\0');
    uint64_t left = header.size;
    while (left > 0) {
      ssize_t n =
          ::read(fd.get(), buffer.data(), static_cast<size_t>(std::min<uint64_t>(left, buffer.size())));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::last_os_error(fmt::format("read {}", path));
      if (n == 0) {
        // Shrank while being read: pad with zeros so the archive stays well-formed, as the size was promised.
        std::fill(buffer.begin(), buffer.end(), '\0');
        n = static_cast<ssize_t>(std::min<uint64_t>(left, buffer.size()));
      }
      KILN_TRY(write_stdout(std::string_view(buffer.data(), static_cast<size_t>(n))));
      left -= static_cast<uint64_t>(n);
    }
    return write_stdout(tar::padding_for(header.size));
  }

  bool stay_on_device_;
  bool overlay_layer_;
  std::optional<dev_t> device_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

int report(const Failure& failure) {
  std::string line = failure.message + "\n";
  (void)write_all(STDERR_FILENO, line);
  return static_cast<int>(failure.exit);
}

int report(const Error& error, BuiltinExit exit = BuiltinExit::kFailed) {
  return report(Failure{exit, error.message()});
}

int archive_stat(const std::vector<std::string>& args) {
  if (args.size() != 1) return report(Failure{BuiltinExit::kUsage, "usage: archive-stat PATH"});
  auto stat = stat_json(args[0]);
  if (auto* failure = std::get_if<Failure>(&stat)) return report(*failure);
  auto written = write_stdout(std::get<std::string>(stat) + "\n");
  return written ? 0 : report(written.error());
}

int archive_get(const std::vector<std::string>& args) {
  if (args.size() != 1) return report(Failure{BuiltinExit::kUsage, "usage: archive-get PATH"});
  std::string path = absolute_path(args[0]);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return report(os_failure(fmt::format("lstat {}", path), errno));
  // The last component is archived as it is (a symlink stays one) unless the path ends with "/" or "/.";
  // entries are named after the requested base name, as dockerd's rebase does.
  std::string source = path.ends_with("/.") || path.ends_with("/") ? resolve_in_root(path) : path;
  // "/dir/." names its entries "./...", "/" names them "/..." (dockerd's rebase of Base(absPath)).
  std::string name = path.ends_with("/.") ? "." : base_name(clean_absolute_path(path));
  TreeWriter writer(/*stay_on_device=*/false);
  auto added = writer.add(source, name);
  if (added) added = writer.finish();
  return added ? 0 : report(added.error());
}

int export_root(const std::vector<std::string>& args) {
  if (!args.empty()) return report(Failure{BuiltinExit::kUsage, "usage: export"});
  TreeWriter writer(/*stay_on_device=*/true);
  auto added = writer.add("/", "");
  if (added) added = writer.finish();
  return added ? 0 : report(added.error());
}

// rm -rf without following symlinks.
Result<void> remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? ok() : Error::last_os_error("lstat " + path);
  if (S_ISDIR(st.st_mode)) {
    for (const auto& child : KILN_TRY(TreeWriter::list(path))) KILN_TRY(remove_tree(path + "/" + child));
    if (::rmdir(path.c_str()) != 0) return Error::last_os_error("remove " + path);
    return ok();
  }
  if (::unlink(path.c_str()) != 0) return Error::last_os_error("remove " + path);
  return ok();
}

Result<void> make_parents(const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    std::string parent = path.substr(0, slash);
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return Error::last_os_error("mkdir " + parent);
  }
  return ok();
}

struct PutOptions {
  bool no_overwrite_dir_non_dir = false;
  std::optional<std::pair<uid_t, gid_t>> owner;  // copyUIDGID: every entry belongs to the container's user
};

class Extractor {
 public:
  Extractor(std::string destination, PutOptions options)
      : destination_(std::move(destination)), options_(options) {}

  // kBadArchive failures come back as Failure; OS errors as kFailed.
  std::optional<Failure> run() {
    tar::Reader reader([](char* buffer, size_t size) -> Result<size_t> {
      for (;;) {
        ssize_t n = ::read(STDIN_FILENO, buffer, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::last_os_error("read the archive");
        return static_cast<size_t>(n);
      }
    });
    for (;;) {
      auto next = reader.next();
      if (!next) return Failure{BuiltinExit::kBadArchive, next.error().message()};
      if (!*next) break;
      auto failure = extract(reader, **next);
      if (failure) return failure;
    }
    // Directory times last: creating their entries changed them.
    for (auto it = directory_times_.rbegin(); it != directory_times_.rend(); ++it) {
      (void)::utimensat(AT_FDCWD, it->first.c_str(), it->second.data(), AT_SYMLINK_NOFOLLOW);
    }
    return std::nullopt;
  }

 private:
  std::optional<Failure> extract(tar::Reader& reader, const tar::Header& header) {
    std::string relative = clean_relative(header.name);
    if (relative == ".." || relative.starts_with("../"))
      return Failure{BuiltinExit::kBadArchive,
                     fmt::format("\"{}\" is outside of \"{}\"", header.name, destination_)};
    if (relative.empty()) return std::nullopt;  // the destination itself: left as it is
    std::string path = (destination_ == "/" ? "" : destination_) + "/" + relative;
    bool is_dir = header.type == tar::EntryType::kDirectory;
    if (auto made = make_parents(path); !made) return Failure{BuiltinExit::kFailed, made.error().message()};
    struct stat existing {};
    if (::lstat(path.c_str(), &existing) == 0) {
      bool existing_dir = S_ISDIR(existing.st_mode);
      if (options_.no_overwrite_dir_non_dir && existing_dir && !is_dir)
        return Failure{
            BuiltinExit::kFailed,
            fmt::format("cannot overwrite directory \"{}\" with non-directory \"{}\"", path, header.name)};
      if (options_.no_overwrite_dir_non_dir && !existing_dir && is_dir)
        return Failure{
            BuiltinExit::kFailed,
            fmt::format("cannot overwrite non-directory \"{}\" with directory \"{}\"", path, header.name)};
      if (!(existing_dir && is_dir)) {
        if (auto removed = remove_tree(path); !removed)
          return Failure{BuiltinExit::kFailed, removed.error().message()};
      }
    }
    switch (header.type) {
      case tar::EntryType::kDirectory:
        if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return os_error("mkdir " + path);
        break;
      case tar::EntryType::kRegular: {
        UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd) return os_error("create " + path);
        std::string buffer(kCopyChunk, '\0');
        for (;;) {
          auto n = reader.read(buffer.data(), buffer.size());
          if (!n) return Failure{BuiltinExit::kBadArchive, n.error().message()};
          if (*n == 0) break;
          if (auto written = write_all(fd.get(), std::string_view(buffer.data(), *n)); !written)
            return Failure{BuiltinExit::kFailed, written.error().message()};
        }
        break;
      }
      case tar::EntryType::kSymlink: {
        // A relative target that climbs out of the destination is refused, as dockerd refuses it.
        if (!header.link_name.starts_with('/')) {
          std::string parent =
              relative.find('/') == std::string::npos ? "" : relative.substr(0, relative.rfind('/'));
          std::string joined =
              clean_relative(parent.empty() ? header.link_name : parent + "/" + header.link_name);
          if (joined == ".." || joined.starts_with("../"))
            return Failure{BuiltinExit::kBadArchive,
                           fmt::format("invalid symlink \"{}\" -> \"{}\"", path, header.link_name)};
        }
        if (::symlink(header.link_name.c_str(), path.c_str()) != 0) return os_error("symlink " + path);
        break;
      }
      case tar::EntryType::kHardLink: {
        std::string target = clean_relative(header.link_name);
        if (target.empty() || target == ".." || target.starts_with("../"))
          return Failure{BuiltinExit::kBadArchive,
                         fmt::format("invalid hardlink \"{}\" -> \"{}\"", path, header.link_name)};
        std::string target_path = (destination_ == "/" ? "" : destination_) + "/" + target;
        if (::link(target_path.c_str(), path.c_str()) != 0) return os_error("link " + path);
        return std::nullopt;  // the target's metadata is the link's
      }
      case tar::EntryType::kCharDevice:
      case tar::EntryType::kBlockDevice:
      case tar::EntryType::kFifo: {
        mode_t kind = header.type == tar::EntryType::kCharDevice    ? S_IFCHR
                      : header.type == tar::EntryType::kBlockDevice ? S_IFBLK
                                                                    : S_IFIFO;
        if (::mknod(path.c_str(), kind | 0600, makedev(header.dev_major, header.dev_minor)) != 0)
          return os_error("mknod " + path);
        break;
      }
    }
    return apply_metadata(path, header);
  }

  std::optional<Failure> apply_metadata(const std::string& path, const tar::Header& header) {
    bool symlink = header.type == tar::EntryType::kSymlink;
    uid_t uid = options_.owner ? options_.owner->first : header.uid;
    gid_t gid = options_.owner ? options_.owner->second : header.gid;
    if (::lchown(path.c_str(), uid, gid) != 0) return os_error("lchown " + path);
    if (!symlink && ::chmod(path.c_str(), header.mode & 07777) != 0) return os_error("chmod " + path);
    for (const auto& [key, value] : header.xattrs)
      (void)::lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0);
    std::array<timespec, 2> times{timespec{.tv_sec = header.mtime_sec, .tv_nsec = 0},
                                  timespec{.tv_sec = header.mtime_sec, .tv_nsec = 0}};
    if (header.type == tar::EntryType::kDirectory) {
      directory_times_.emplace_back(path, times);
    } else {
      (void)::utimensat(AT_FDCWD, path.c_str(), times.data(), AT_SYMLINK_NOFOLLOW);
    }
    return std::nullopt;
  }

  static std::optional<Failure> os_error(const std::string& what) {
    return Failure{BuiltinExit::kFailed, fmt::format("{}: {}", what, errno_text(errno))};
  }

  std::string destination_;
  PutOptions options_;
  std::vector<std::pair<std::string, std::array<timespec, 2>>> directory_times_;
};

int archive_put(const std::vector<std::string>& args) {
  if (args.empty()) return report(Failure{BuiltinExit::kUsage, "usage: archive-put DIR [options]"});
  PutOptions options;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--no-overwrite-dir-non-dir") {
      options.no_overwrite_dir_non_dir = true;
    } else if (args[i] == "--chown-user" && i + 1 < args.size()) {
      // copyUIDGID: the container's user, resolved in its own /etc/passwd and /etc/group.
      auto user = resolve_container_user("/", args[++i]);
      if (!user) return report(user.error());
      options.owner = std::pair{user->uid, user->gid};
    } else {
      return report(Failure{BuiltinExit::kUsage, fmt::format("archive-put: unknown option {}", args[i])});
    }
  }
  std::string requested = absolute_path(args[0]);
  std::string destination = resolve_in_root(requested);
  struct stat st {};
  if (::stat(destination.c_str(), &st) != 0)
    return report(os_failure(fmt::format("stat {}", requested), errno));
  if (!S_ISDIR(st.st_mode))
    return report(Failure{BuiltinExit::kNotADirectory, "extraction point is not a directory"});
  Extractor extractor(destination, options);
  if (auto failure = extractor.run()) return report(*failure);
  return 0;
}

// `docker diff`: dockerd compares the container's filesystem with its image (archive.ChangesDirs). Every
// difference lies in the overlay's upper directory, so only it is walked, each entry compared with the image
// (lower). Paths dockerd keeps in the container's init layer or bind-mounts (/etc/hosts, ...) and the mount
// points Kiln's container setup creates (/proc, /sys, /dev) are not changes.
class DiffWalker {
 public:
  DiffWalker(std::string upper, std::string lower) : upper_(std::move(upper)), lower_(std::move(lower)) {}

  Result<void> run() {
    KILN_TRY(walk("", false));
    std::string out;
    for (const auto& [kind, path] : changes_) out += fmt::format("{} {}\n", kind, path);
    return write_stdout(out);
  }

 private:
  static bool skipped(const std::string& path) { return in_init_layer(path); }

  bool opaque(const std::string& path) const { return is_opaque(upper_ + path); }

  // archive.statDifferent: mode, owner and device always; size and mtime for non-directories.
  static bool stat_different(const struct stat& old_stat, const struct stat& new_stat) {
    if (old_stat.st_mode != new_stat.st_mode || old_stat.st_uid != new_stat.st_uid ||
        old_stat.st_gid != new_stat.st_gid || old_stat.st_rdev != new_stat.st_rdev)
      return true;
    if (S_ISDIR(old_stat.st_mode)) return false;
    bool same_time = old_stat.st_mtim.tv_sec == new_stat.st_mtim.tv_sec &&
                     (old_stat.st_mtim.tv_nsec == new_stat.st_mtim.tv_nsec || old_stat.st_mtim.tv_nsec == 0 ||
                      new_stat.st_mtim.tv_nsec == 0);
    return !same_time || old_stat.st_size != new_stat.st_size;
  }

  // `dir` ("" is the root) exists in the upper layer as a directory. `replaces_lower`: its merged contents
  // are the upper's alone (it or an ancestor is opaque), so lower entries missing from it were deleted.
  Result<void> walk(const std::string& dir, bool replaces_lower) {
    std::vector<std::string> names = KILN_TRY(TreeWriter::list(upper_ + (dir.empty() ? "/" : dir)));
    std::set<std::string> present(names.begin(), names.end());
    for (const auto& name : names) {
      std::string path = dir + "/" + name;
      if (skipped(path)) continue;
      struct stat upper {};
      if (::lstat((upper_ + path).c_str(), &upper) != 0)
        return Error::last_os_error("lstat " + upper_ + path);
      struct stat lower {};
      bool in_lower = ::lstat((lower_ + path).c_str(), &lower) == 0;
      if (is_whiteout(upper)) {
        if (in_lower) changes_.emplace_back('D', path);
        continue;
      }
      size_t before = changes_.size();
      bool recorded = false;
      if (!in_lower) {
        changes_.emplace_back('A', path);
        recorded = true;
      } else if (stat_different(lower, upper) || read_xattr(lower_ + path, "security.capability") !=
                                                     read_xattr(upper_ + path, "security.capability")) {
        changes_.emplace_back('C', path);
        recorded = true;
      }
      if (!S_ISDIR(upper.st_mode)) continue;
      bool lower_dir = in_lower && S_ISDIR(lower.st_mode);
      KILN_TRY(walk(path, !lower_dir || replaces_lower || opaque(path)));
      // A directory with changes inside is itself changed (dockerd inserts it before them).
      if (!recorded && changes_.size() > before)
        changes_.insert(changes_.begin() + static_cast<std::ptrdiff_t>(before), {'C', path});
    }
    if (replaces_lower) {
      struct stat lower_dir {};
      std::string lower_path = lower_ + (dir.empty() ? "/" : dir);
      if (::lstat(lower_path.c_str(), &lower_dir) == 0 && S_ISDIR(lower_dir.st_mode)) {
        for (const auto& name : KILN_TRY(TreeWriter::list(lower_path))) {
          std::string path = dir + "/" + name;
          if (!present.count(name) && !skipped(path)) changes_.emplace_back('D', path);
        }
      }
    }
    return ok();
  }

  std::string upper_;
  std::string lower_;
  std::vector<std::pair<char, std::string>> changes_;
};

int layer(const std::vector<std::string>& args) {
  if (args.size() != 1) return report(Failure{BuiltinExit::kUsage, "usage: layer UPPER"});
  TreeWriter writer(/*stay_on_device=*/false, /*overlay_layer=*/true);
  auto added = writer.add(args[0], "");
  if (added) added = writer.finish();
  return added ? 0 : report(added.error());
}

int diff(const std::vector<std::string>& args) {
  if (args.size() != 2) return report(Failure{BuiltinExit::kUsage, "usage: diff UPPER LOWER"});
  DiffWalker walker(args[0], args[1]);
  auto walked = walker.run();
  return walked ? 0 : report(walked.error());
}

}  // namespace

int run_file_builtin(std::string_view name, const std::string& root, const std::vector<std::string>& args) {
  if (!root.empty()) {
    if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0)
      return report(Failure{BuiltinExit::kFailed, fmt::format("chroot {}: {}", root, errno_text(errno))});
  }
  if (name == "archive-stat") return archive_stat(args);
  if (name == "archive-get") return archive_get(args);
  if (name == "archive-put") return archive_put(args);
  if (name == "export") return export_root(args);
  if (name == "diff") return diff(args);
  if (name == "layer") return layer(args);
  return report(Failure{BuiltinExit::kUsage, fmt::format("unknown builtin {}", name)});
}

}  // namespace kiln::agent

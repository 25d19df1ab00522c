#include "image/layer_apply.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <memory>
#include <span>
#include <unordered_set>
#include <vector>

#include "common/errno_text.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/unique_fd.h"

namespace kiln::image {

std::string_view layer_error_message(LayerError kind) {
  switch (kind) {
    case LayerError::kAbsolutePath:
      return "layer entry has an absolute path";
    case LayerError::kPathTraversal:
      return "layer entry path contains '..'";
    case LayerError::kSymlinkEscape:
      return "layer entry resolves through a symlink that leaves the root";
    case LayerError::kHardlinkEscape:
      return "layer hard link target is outside the root or invalid";
    case LayerError::kNotADirectory:
      return "layer entry's parent is not a directory";
    case LayerError::kTooLarge:
      return "layer is larger than allowed";
    case LayerError::kCorrupt:
      return "layer archive is corrupt or truncated";
    case LayerError::kDiffIdMismatch:
      return "layer content does not match its diff_id";
    case LayerError::kBadEntry:
      return "layer has an entry that cannot be applied";
  }
  return "layer is invalid";
}

Error make_layer_error(LayerError kind, std::string_view detail) {
  return Error::protocol(fmt::format("{}: {}", layer_error_message(kind), detail));
}

namespace {

constexpr int kMaxSymlinkFollows = 40;  // as the kernel's MAXSYMLINKS
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

std::string human_bytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{} bytes", bytes);
}

// The uncompressed bytes of a layer (gzip, zstd, xz or none, detected by libarchive), hashed as they pass so
// the diff_id is known at the end without a second read.
class DecompressedStream {
 public:
  static Result<std::unique_ptr<DecompressedStream>> open(int fd) {
    auto stream = std::unique_ptr<DecompressedStream>(new DecompressedStream());
    archive* a = archive_read_new();
    if (!a) return Error::internal("archive_read_new failed");
    stream->archive_.reset(a);
    // Only in-process decoders: archive_read_support_filter_all() can fall back to running external programs.
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_xz(a);
    archive_read_support_format_raw(a);
    if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK) {
      return make_layer_error(LayerError::kCorrupt, archive_error_string(a));
    }
    archive_entry* entry = nullptr;
    int status = archive_read_next_header(a, &entry);
    if (status == ARCHIVE_EOF) {
      stream->eof_ = true;
    } else if (status != ARCHIVE_OK) {
      return make_layer_error(LayerError::kCorrupt, archive_error_string(a));
    }
    return stream;
  }

  // The next chunk; empty at the end.
  Result<std::string_view> read() {
    if (eof_) return std::string_view();
    la_ssize_t n = archive_read_data(archive_.get(), buffer_.data(), buffer_.size());
    if (n < 0) return make_layer_error(LayerError::kCorrupt, archive_error_string(archive_.get()));
    if (n == 0) {
      eof_ = true;
      return std::string_view();
    }
    std::string_view chunk(buffer_.data(), static_cast<size_t>(n));
    hash_.update(chunk);
    total_ += chunk.size();
    return chunk;
  }

  Result<void> drain() {
    while (!KILN_TRY(read()).empty()) {
    }
    return ok();
  }

  Digest digest() { return *Digest::from_sha256_hex(hash_.finish_hex()); }
  uint64_t total() const { return total_; }

 private:
  DecompressedStream() : buffer_(1 << 17, '\0') {}
  ArchivePtr archive_;
  Sha256 hash_;
  std::string buffer_;
  uint64_t total_ = 0;
  bool eof_ = false;
};

// libarchive client callback: the tar reader pulls decompressed bytes from the DecompressedStream and keeps
// the stream's own error, which says more than libarchive's generic "read error".
struct TarSource {
  DecompressedStream* stream;
  std::optional<Error> error;
};

la_ssize_t read_from_stream(archive* a, void* client, const void** buffer) {
  auto* source = static_cast<TarSource*>(client);
  auto chunk = source->stream->read();
  if (!chunk) {
    archive_set_error(a, EIO, "%s", chunk.error().message().c_str());
    source->error = chunk.error();
    return -1;
  }
  *buffer = chunk->data();
  return static_cast<la_ssize_t>(chunk->size());
}

Result<UniqueFd> open_beneath(int dir_fd, const std::string& name, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
  // Belt and braces: `name` is one component already, but the kernel enforces it too.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dir_fd, name.c_str(), &how, sizeof how);
  if (fd < 0 && errno == ENOSYS) fd = ::openat(dir_fd, name.c_str(), static_cast<int>(how.flags));
  if (fd < 0) return Error::last_os_error(fmt::format("open '{}'", name));
  return UniqueFd(static_cast<int>(fd));
}

// Splits an archive name into components: "./a//b/" -> {a, b}. No component is empty, "." or "..".
Result<std::vector<std::string>> split_entry_name(std::string_view name, LayerError absolute_error,
                                                  LayerError traversal_error) {
  if (name.starts_with('/')) return make_layer_error(absolute_error, fmt::format("'{}'", name));
  std::vector<std::string> components;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) slash = name.size();
    std::string_view component = name.substr(start, slash - start);
    if (component == "..") return make_layer_error(traversal_error, fmt::format("'{}'", name));
    if (!component.empty() && component != ".") components.emplace_back(component);
    start = slash + 1;
  }
  return components;
}

std::string join_path(const std::string& parent, std::string_view name) {
  return parent.empty() ? std::string(name) : parent + "/" + std::string(name);
}

// A directory inside the root: an O_PATH fd and its canonical path ("" for the root itself).
struct ResolvedDir {
  UniqueFd fd;
  std::string path;
};

Result<void> remove_at(int dir_fd, const std::string& name);

// Removes every entry of the directory `dir_fd` for which `keep(name)` is false.
template <typename Keep>
Result<void> clear_directory(int dir_fd, Keep keep) {
  UniqueFd listing(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) return Error::last_os_error("open directory");
  DIR* dir = ::fdopendir(listing.get());
  if (!dir) return Error::last_os_error("fdopendir");
  (void)listing.release();  // closedir owns it now
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != ".." && !keep(name)) names.emplace_back(name);
  }
  ::closedir(dir);
  for (const std::string& name : names) KILN_TRY(remove_at(dir_fd, name));
  return ok();
}

// rm -rf of `name` inside `dir_fd`, never following symlinks.
Result<void> remove_at(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return ok();
    return Error::last_os_error(fmt::format("stat '{}'", name));
  }
  if (S_ISDIR(st.st_mode)) {
    UniqueFd child = KILN_TRY(open_beneath(dir_fd, name, O_PATH | O_DIRECTORY));
    KILN_TRY(clear_directory(child.get(), [](std::string_view) { return false; }));
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) {
      return Error::last_os_error(fmt::format("remove directory '{}'", name));
    }
    return ok();
  }
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0) return Error::last_os_error(fmt::format("remove '{}'", name));
  return ok();
}

Result<void> pwrite_all(int fd, const char* data, size_t size, off_t offset) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::last_os_error("write");
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return ok();
}

// Applies one layer's entries to the tree under root_fd. Owns the per-layer state whiteouts need.
class LayerApplier {
 public:
  LayerApplier(int root_fd, const UnpackOptions& options, archive* tar)
      : root_fd_(root_fd), options_(options), tar_(tar) {}

  Result<void> apply(archive_entry* entry) {
    const char* raw_name = archive_entry_pathname(entry);
    if (!raw_name) return make_layer_error(LayerError::kBadEntry, "entry without a name");
    std::string name = raw_name;
    auto components = KILN_TRY(split_entry_name(name, LayerError::kAbsolutePath, LayerError::kPathTraversal));
    ++entries_;
    if (components.empty()) return apply_root(entry, name);

    std::string base = components.back();
    std::span<const std::string> parents(components.data(), components.size() - 1);
    if (base.starts_with(kWhiteoutPrefix)) return apply_whiteout(parents, base, name);

    ResolvedDir parent = KILN_TRY(resolve_dir(parents, /*create=*/true, name));
    std::string path = join_path(parent.path, base);
    mark_created(path);
    if (const char* target = archive_entry_hardlink(entry))
      return create_hardlink(parent, base, target, name);

    mode_t type = archive_entry_filetype(entry);
    struct stat existing {};
    bool exists = ::fstatat(parent.fd.get(), base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !(type == AE_IFDIR && S_ISDIR(existing.st_mode)))
      KILN_TRY(remove_at(parent.fd.get(), base));

    switch (type) {
      case AE_IFREG:
        return create_file(parent, base, entry, name);
      case AE_IFDIR:
        return create_directory(parent, base, entry, exists && S_ISDIR(existing.st_mode));
      case AE_IFLNK:
        return create_symlink(parent, base, entry, name);
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO:
        return create_node(parent, base, entry, type, name);
      case AE_IFSOCK:
        log::debug("skipping socket in layer", {{"path", name}});
        return ok();
      default:
        return make_layer_error(LayerError::kBadEntry, fmt::format("'{}' has unknown type {:o}", name, type));
    }
  }

  uint64_t entries() const { return entries_; }
  uint64_t content_bytes() const { return content_bytes_; }

 private:
  // Walks `components` from the root, one openat2 per component. Symlinks are followed as if the root were
  // "/" (an absolute target restarts at the root); a ".." that would climb above the root is refused.
  Result<ResolvedDir> resolve_dir(std::span<const std::string> components, bool create,
                                  std::string_view entry) {
    std::vector<UniqueFd> stack;  // fds of the directories below the root on the current path
    std::vector<std::string> names;
    std::deque<std::string> pending(components.begin(), components.end());
    int follows = 0;
    auto current = [&] { return stack.empty() ? root_fd_ : stack.back().get(); };
    while (!pending.empty()) {
      std::string name = std::move(pending.front());
      pending.pop_front();
      if (name.empty() || name == ".") continue;
      if (name == "..") {  // only symlink targets get here: entry names with ".." were refused
        if (stack.empty()) {
          return make_layer_error(LayerError::kSymlinkEscape,
                                  fmt::format("'{}' (via '..' above the root)", entry));
        }
        stack.pop_back();
        names.pop_back();
        continue;
      }
      struct stat st {};
      if (::fstatat(current(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) return Error::last_os_error(fmt::format("stat '{}'", name));
        if (!create) return Error::not_found(fmt::format("'{}' has no parent directory '{}'", entry, name));
        if (::mkdirat(current(), name.c_str(), 0755) != 0) {
          return Error::last_os_error(fmt::format("create parent directory '{}' of '{}'", name, entry));
        }
        mark_created(join_path(fmt::format("{}", fmt::join(names, "/")), name));
        st.st_mode = S_IFDIR;
      }
      if (S_ISLNK(st.st_mode)) {
        if (++follows > kMaxSymlinkFollows) {
          return make_layer_error(LayerError::kSymlinkEscape, fmt::format("'{}' (too many symlinks)", entry));
        }
        std::string target = KILN_TRY(read_link(current(), name));
        auto target_components = split_symlink_target(target);
        if (target.starts_with('/')) {
          stack.clear();
          names.clear();
        }
        pending.insert(pending.begin(), target_components.begin(), target_components.end());
        continue;
      }
      if (!S_ISDIR(st.st_mode)) {
        return make_layer_error(LayerError::kNotADirectory, fmt::format("'{}' (at '{}')", entry, name));
      }
      stack.push_back(KILN_TRY(open_beneath(current(), name, O_PATH | O_DIRECTORY)));
      names.push_back(name);
    }
    ResolvedDir dir{.path = fmt::format("{}", fmt::join(names, "/"))};
    if (stack.empty()) {
      dir.fd = KILN_TRY(open_beneath(root_fd_, ".", O_PATH | O_DIRECTORY));
    } else {
      dir.fd = std::move(stack.back());
    }
    return dir;
  }

  static std::vector<std::string> split_symlink_target(std::string_view target) {
    std::vector<std::string> components;
    size_t start = 0;
    while (start <= target.size()) {
      size_t slash = target.find('/', start);
      if (slash == std::string_view::npos) slash = target.size();
      if (slash > start) components.emplace_back(target.substr(start, slash - start));
      start = slash + 1;
    }
    return components;
  }

  static Result<std::string> read_link(int dir_fd, const std::string& name) {
    std::string target(4096, '\0');
    ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
    if (n < 0) return Error::last_os_error(fmt::format("readlink '{}'", name));
    target.resize(static_cast<size_t>(n));
    return target;
  }

  // Marks `path` and its ancestors as written by this layer: whiteouts in the same layer must not hide them
  // (image-spec layer.md: whiteouts apply only to lower layers).
  void mark_created(const std::string& path) {
    std::string_view view = path;
    while (!view.empty()) {
      if (!created_.emplace(view).second) break;
      auto slash = view.rfind('/');
      view = slash == std::string_view::npos ? std::string_view() : view.substr(0, slash);
    }
  }

  bool created_in_this_layer(const std::string& path) const { return created_.contains(path); }

  Result<void> apply_whiteout(std::span<const std::string> parents, const std::string& base,
                              const std::string& entry) {
    auto parent = resolve_dir(parents, /*create=*/false, entry);
    if (!parent) {
      // Hiding something under a directory that does not exist hides nothing.
      if (parent.error().category() == ErrorCategory::kNotFound) return ok();
      return std::move(parent).error();
    }
    if (base == kOpaqueWhiteout) {
      return clear_directory(parent->fd.get(), [&](std::string_view child) {
        return created_in_this_layer(join_path(parent->path, child));
      });
    }
    if (base.starts_with(kWhiteoutMetaPrefix)) return ok();  // AUFS bookkeeping (.wh..wh.plnk etc.)
    std::string hidden = base.substr(kWhiteoutPrefix.size());
    if (hidden.empty() || hidden == "." || hidden == "..") {
      return make_layer_error(LayerError::kBadEntry, fmt::format("whiteout '{}' names nothing", entry));
    }
    if (created_in_this_layer(join_path(parent->path, hidden))) return ok();
    return remove_at(parent->fd.get(), hidden);
  }

  Result<void> create_hardlink(const ResolvedDir& parent, const std::string& base, std::string_view target,
                               const std::string& entry) {
    auto components =
        KILN_TRY(split_entry_name(target, LayerError::kHardlinkEscape, LayerError::kHardlinkEscape));
    if (components.empty())
      return make_layer_error(LayerError::kHardlinkEscape, fmt::format("'{}' -> '{}'", entry, target));
    std::span<const std::string> target_parents(components.data(), components.size() - 1);
    auto target_dir = resolve_dir(target_parents, /*create=*/false, entry);
    if (!target_dir) {
      if (target_dir.error().category() == ErrorCategory::kNotFound) {
        return make_layer_error(LayerError::kHardlinkEscape,
                                fmt::format("'{}' -> '{}' (target missing)", entry, target));
      }
      return std::move(target_dir).error();
    }
    struct stat st {};
    if (::fstatat(target_dir->fd.get(), components.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return make_layer_error(LayerError::kHardlinkEscape,
                              fmt::format("'{}' -> '{}' (target missing)", entry, target));
    }
    if (S_ISDIR(st.st_mode)) {
      return make_layer_error(LayerError::kHardlinkEscape,
                              fmt::format("'{}' -> '{}' (a directory)", entry, target));
    }
    if (target_dir->path == parent.path && components.back() == base) return ok();  // a link to itself
    KILN_TRY(remove_at(parent.fd.get(), base));
    if (::linkat(target_dir->fd.get(), components.back().c_str(), parent.fd.get(), base.c_str(), 0) != 0) {
      return Error::last_os_error(fmt::format("hard link '{}' -> '{}'", entry, target));
    }
    return ok();
  }

  Result<void> create_file(const ResolvedDir& parent, const std::string& base, archive_entry* entry,
                           const std::string& name) {
    uint64_t claimed =
        archive_entry_size_is_set(entry) ? static_cast<uint64_t>(archive_entry_size(entry)) : 0;
    if (claimed > options_.max_bytes - std::min(content_bytes_, options_.max_bytes)) {
      return make_layer_error(LayerError::kTooLarge,
                              fmt::format("'{}' claims {}, more than the {} a layer may hold", name,
                                          human_bytes(claimed), human_bytes(options_.max_bytes)));
    }
    int raw =
        ::openat(parent.fd.get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (raw < 0) return Error::last_os_error(fmt::format("create '{}'", name));
    UniqueFd fd(raw);
    uint64_t written = 0;
    while (true) {
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      int status = archive_read_data_block(tar_, &block, &size, &offset);
      if (status == ARCHIVE_EOF) break;
      if (status < ARCHIVE_WARN) return corrupt(fmt::format("reading '{}'", name));
      written += size;
      if (written > claimed || content_bytes_ + written > options_.max_bytes) {
        return make_layer_error(LayerError::kTooLarge,
                                fmt::format("'{}' holds more data than it declares", name));
      }
      KILN_TRY(pwrite_all(fd.get(), static_cast<const char*>(block), size, offset));
    }
    content_bytes_ += claimed;
    // Sparse files (and a hole at the end) keep their declared size.
    if (::ftruncate(fd.get(), static_cast<off_t>(claimed)) != 0)
      return Error::last_os_error(fmt::format("truncate '{}'", name));
    return apply_metadata(fd.get(), parent, base, entry, /*is_symlink=*/false);
  }

  Result<void> create_directory(const ResolvedDir& parent, const std::string& base, archive_entry* entry,
                                bool exists) {
    if (!exists && ::mkdirat(parent.fd.get(), base.c_str(), 0700) != 0) {
      return Error::last_os_error(fmt::format("create directory '{}'", join_path(parent.path, base)));
    }
    UniqueFd fd = KILN_TRY(open_beneath(parent.fd.get(), base, O_RDONLY | O_DIRECTORY));
    return apply_metadata(fd.get(), parent, base, entry, /*is_symlink=*/false);
  }

  Result<void> create_symlink(const ResolvedDir& parent, const std::string& base, archive_entry* entry,
                              const std::string& name) {
    const char* target = archive_entry_symlink(entry);
    if (!target || !*target)
      return make_layer_error(LayerError::kBadEntry, fmt::format("symlink '{}' has no target", name));
    // The target is stored verbatim: a symlink is only data until something resolves it, and Kiln resolves
    // paths only inside the root.
    if (::symlinkat(target, parent.fd.get(), base.c_str()) != 0) {
      return Error::last_os_error(fmt::format("create symlink '{}'", name));
    }
    return apply_metadata(-1, parent, base, entry, /*is_symlink=*/true);
  }

  Result<void> create_node(const ResolvedDir& parent, const std::string& base, archive_entry* entry,
                           mode_t type, const std::string& name) {
    bool device = type == AE_IFCHR || type == AE_IFBLK;
    if (device && !options_.allow_devices) {
      log::debug("skipping device node", {{"path", name}});
      return ok();
    }
    dev_t rdev = device ? makedev(archive_entry_rdevmajor(entry), archive_entry_rdevminor(entry)) : 0;
    mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
    if (::mknodat(parent.fd.get(), base.c_str(), kind | 0600, rdev) != 0) {
      if (errno == EPERM && device) {
        log::warn("not permitted to create device node; skipped", {{"path", name}});
        return ok();
      }
      return Error::last_os_error(fmt::format("mknod '{}'", name));
    }
    return apply_metadata(-1, parent, base, entry, /*is_symlink=*/false);
  }

  Result<void> apply_root(archive_entry* entry, const std::string& name) {
    if (archive_entry_filetype(entry) != AE_IFDIR || archive_entry_hardlink(entry)) {
      return make_layer_error(LayerError::kBadEntry,
                              fmt::format("'{}' names the root but is not a directory", name));
    }
    UniqueFd fd = KILN_TRY(open_beneath(root_fd_, ".", O_RDONLY | O_DIRECTORY));
    ResolvedDir self{.fd = KILN_TRY(open_beneath(root_fd_, ".", O_PATH | O_DIRECTORY))};
    return apply_metadata(fd.get(), self, ".", entry, /*is_symlink=*/false);
  }

  // Ownership, then mode (chown clears set-id bits), xattrs, times. `fd` is an open fd for files and
  // directories, -1 for symlinks and nodes (which are addressed through parent + name, never followed).
  Result<void> apply_metadata(int fd, const ResolvedDir& parent, const std::string& base,
                              archive_entry* entry, bool is_symlink) {
    int dir = parent.fd.get();
    const char* name = base.c_str();
    std::string display = join_path(parent.path, base);
    if (options_.preserve_ownership) {
      auto uid = static_cast<uid_t>(archive_entry_uid(entry));
      auto gid = static_cast<gid_t>(archive_entry_gid(entry));
      int rc = fd >= 0 ? ::fchown(fd, uid, gid) : ::fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW);
      if (rc != 0) return Error::last_os_error(fmt::format("chown '{}'", display));
    }
    if (!is_symlink) {
      mode_t mode = archive_entry_perm(entry) & 07777;
      int rc = fd >= 0 ? ::fchmod(fd, mode) : ::fchmodat(dir, name, mode, 0);
      if (rc != 0) return Error::last_os_error(fmt::format("chmod '{}'", display));
    }
    KILN_TRY(apply_xattrs(fd, dir, base, entry, display));
    timespec times[2];
    times[1] = {.tv_sec = archive_entry_mtime(entry), .tv_nsec = archive_entry_mtime_nsec(entry)};
    times[0] = archive_entry_atime_is_set(entry) ? timespec{.tv_sec = archive_entry_atime(entry),
                                                            .tv_nsec = archive_entry_atime_nsec(entry)}
                                                 : times[1];
    int rc = fd >= 0 ? ::futimens(fd, times) : ::utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return Error::last_os_error(fmt::format("set times of '{}'", display));
    return ok();
  }

  Result<void> apply_xattrs(int fd, int dir, const std::string& base, archive_entry* entry,
                            const std::string& display) {
    if (archive_entry_xattr_reset(entry) == 0) return ok();
    // Symlinks and nodes have no open fd; /proc/self/fd/<dir>/<name> reaches them without following.
    std::string path = fmt::format("/proc/self/fd/{}/{}", dir, base);
    const char* key = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(entry, &key, &value, &size) == ARCHIVE_OK) {
      int rc =
          fd >= 0 ? ::fsetxattr(fd, key, value, size, 0) : ::lsetxattr(path.c_str(), key, value, size, 0);
      if (rc != 0) {
        // Filesystems differ in which namespaces they accept; a lost xattr is not worth failing a pull.
        log::warn("could not set xattr", {{"path", display}, {"xattr", key}, {"error", errno_text(errno)}});
      }
    }
    return ok();
  }

  Error corrupt(std::string_view what) {
    return make_layer_error(LayerError::kCorrupt, fmt::format("{}: {}", what, archive_error_string(tar_)));
  }

  int root_fd_;
  const UnpackOptions& options_;
  archive* tar_;
  uint64_t entries_ = 0;
  uint64_t content_bytes_ = 0;
  std::unordered_set<std::string> created_;
};

}  // namespace

Result<LayerStats> apply_layer(int root_fd, int layer_fd, const UnpackOptions& options) {
  auto stream = KILN_TRY(DecompressedStream::open(layer_fd));
  TarSource source{.stream = stream.get()};
  ArchivePtr tar(archive_read_new());
  if (!tar) return Error::internal("archive_read_new failed");
  archive_read_support_format_tar(tar.get());
  if (archive_read_open(tar.get(), &source, nullptr, read_from_stream, nullptr) != ARCHIVE_OK) {
    if (source.error) return *source.error;
    return make_layer_error(LayerError::kCorrupt, archive_error_string(tar.get()));
  }
  LayerApplier applier(root_fd, options, tar.get());
  while (true) {
    archive_entry* entry = nullptr;
    int status = archive_read_next_header(tar.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) {
      if (source.error) return *source.error;
      return make_layer_error(LayerError::kCorrupt, archive_error_string(tar.get()));
    }
    auto applied = applier.apply(entry);
    if (!applied) {
      if (source.error) return *source.error;
      return std::move(applied).error();
    }
  }
  // Tar readers stop at the end-of-archive blocks; the diff_id covers every byte, padding included.
  KILN_TRY(stream->drain());
  LayerStats stats{
      .entries = applier.entries(), .content_bytes = applier.content_bytes(), .diff_id = stream->digest()};
  if (options.expected_diff_id && stats.diff_id != *options.expected_diff_id) {
    return make_layer_error(LayerError::kDiffIdMismatch,
                            fmt::format("expected {}, got {}", *options.expected_diff_id, stats.diff_id));
  }
  return stats;
}

Result<uint64_t> verify_tar_layer(int layer_fd) {
  ArchivePtr reader(archive_read_new());
  if (!reader) return Error::internal("archive_read_new failed");
  archive* a = reader.get();
  // The same in-process decoders as DecompressedStream; tar formats only, so random bytes are refused.
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_zstd(a);
  archive_read_support_filter_xz(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  if (archive_read_open_fd(a, layer_fd, 1 << 16) != ARCHIVE_OK)
    return make_layer_error(LayerError::kCorrupt, archive_error_string(a));
  uint64_t entries = 0;
  for (;;) {
    archive_entry* entry = nullptr;
    int status = archive_read_next_header(a, &entry);
    if (status == ARCHIVE_EOF) return entries;
    if (status != ARCHIVE_OK && status != ARCHIVE_WARN) {
      return make_layer_error(LayerError::kCorrupt,
                              fmt::format("not a tar archive: {}", archive_error_string(a)));
    }
    if (archive_read_data_skip(a) != ARCHIVE_OK)
      return make_layer_error(LayerError::kCorrupt, archive_error_string(a));
    ++entries;
  }
}

Result<Digest> compute_diff_id(int layer_fd) {
  auto stream = KILN_TRY(DecompressedStream::open(layer_fd));
  KILN_TRY(stream->drain());
  return stream->digest();
}

}  // namespace kiln::image

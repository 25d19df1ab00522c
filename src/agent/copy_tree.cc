#include "agent/copy_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <string>
#include <utility>

#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

class TreeCopier {
 public:
  explicit TreeCopier(int to_top) : to_top_(to_top) {}

  // `relative`: the directory's path below the destination's top ("" for the top), for hard links.
  Result<void> copy_contents(int from_dir, int to_dir, const std::string& relative) {
    // fdopendir takes ownership of its fd: give it a duplicate, so the caller's stays theirs.
    UniqueFd listing(::openat(from_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) return Error::last_os_error("open a directory to copy");
    DIR* dir = ::fdopendir(listing.get());
    if (dir == nullptr) return Error::last_os_error("list a directory to copy");
    (void)listing.release();
    std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
    while (dirent* entry = ::readdir(dir)) {
      std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      KILN_TRY(copy_entry(from_dir, to_dir, name, relative.empty() ? name : relative + "/" + name));
    }
    return ok();
  }

 private:
  Result<void> copy_entry(int from_dir, int to_dir, const std::string& name, const std::string& relative) {
    struct stat st {};
    if (::fstatat(from_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return Error::last_os_error(fmt::format("stat {}", relative));
    auto fail = [&](std::string_view what) {
      return Error::last_os_error(fmt::format("{} {}", what, relative));
    };

    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [seen, inserted] = links_.try_emplace({st.st_dev, st.st_ino}, relative);
      if (!inserted) {
        if (::linkat(to_top_, seen->second.c_str(), to_dir, name.c_str(), 0) != 0) return fail("link");
        return ok();
      }
    }

    if (S_ISDIR(st.st_mode)) {
      if (::mkdirat(to_dir, name.c_str(), 0700) != 0) return fail("mkdir");
      UniqueFd from(::openat(from_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      UniqueFd to(::openat(to_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!from || !to) return fail("open");
      KILN_TRY(copy_contents(from.get(), to.get(), relative));
      return finish(to.get(), st, relative);
    }
    if (S_ISREG(st.st_mode)) {
      UniqueFd from(::openat(from_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!from) return fail("open");
      UniqueFd to(::openat(to_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!to) return fail("create");
      KILN_TRY(copy_bytes(from.get(), to.get(), relative));
      return finish(to.get(), st, relative);
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t length = ::readlinkat(from_dir, name.c_str(), target.data(), target.size());
      if (length < 0) return fail("read link");
      target.resize(static_cast<size_t>(length));
      if (::symlinkat(target.c_str(), to_dir, name.c_str()) != 0) return fail("make link");
      if (::fchownat(to_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0)
        return fail("chown");
      timespec times[2] = {st.st_atim, st.st_mtim};
      (void)::utimensat(to_dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
      return ok();
    }
    // FIFOs, sockets and device nodes: the node itself, as `cp -a` makes it.
    if (::mknodat(to_dir, name.c_str(), st.st_mode, st.st_rdev) != 0) return fail("make node");
    UniqueFd to(::openat(to_dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!to) return fail("open");
    std::string through = fmt::format("/proc/self/fd/{}", to.get());
    if (::chown(through.c_str(), st.st_uid, st.st_gid) != 0) return fail("chown");
    if (::chmod(through.c_str(), st.st_mode & 07777) != 0) return fail("chmod");
    return ok();
  }

  static Result<void> copy_bytes(int from, int to, const std::string& relative) {
    char buffer[64 * 1024];
    for (;;) {
      ssize_t got = ::read(from, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return Error::last_os_error(fmt::format("read {}", relative));
      if (got == 0) return ok();
      for (ssize_t done = 0; done < got;) {
        ssize_t put = ::write(to, buffer + done, static_cast<size_t>(got - done));
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) return Error::last_os_error(fmt::format("write {}", relative));
        done += put;
      }
    }
  }

  // Owner before mode: chown clears set-id bits, which the mode then restores. Times last.
  static Result<void> finish(int fd, const struct stat& st, const std::string& relative) {
    if (::fchown(fd, st.st_uid, st.st_gid) != 0)
      return Error::last_os_error(fmt::format("chown {}", relative));
    if (::fchmod(fd, st.st_mode & 07777) != 0) return Error::last_os_error(fmt::format("chmod {}", relative));
    timespec times[2] = {st.st_atim, st.st_mtim};
    (void)::futimens(fd, times);
    return ok();
  }

  int to_top_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first copy of each multiply-linked file
};

}  // namespace

Result<void> copy_directory_contents(int from_dir, int to_dir) {
  TreeCopier copier(to_dir);
  return copier.copy_contents(from_dir, to_dir, "");
}

}  // namespace kiln::agent

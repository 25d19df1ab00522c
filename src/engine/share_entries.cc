#include "engine/share_entries.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"

namespace kiln::engine {

namespace {

bool is_single_component(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

// The entry's mount point: the same kind as its source, since a bind needs a directory over a directory and
// a file over a file. One left by an earlier start of the same VM is reused.
Result<void> make_mount_point(const std::string& path, bool directory) {
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (directory ? S_ISDIR(existing.st_mode) : S_ISREG(existing.st_mode)) return ok();
    return Error::failed_precondition(fmt::format("{} is in the way of a share's mount point", path));
  }
  if (directory) {
    if (::mkdir(path.c_str(), 0755) != 0) return Error::last_os_error(fmt::format("mkdir {}", path));
    return ok();
  }
  UniqueFd made(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!made) return Error::last_os_error(fmt::format("create {}", path));
  return ok();
}

}  // namespace

Result<std::vector<PrivateBind>> prepare_share_entries(const VmSpec& spec) {
  std::vector<PrivateBind> binds;
  for (const ShareSpec& share : spec.shares) {
    for (const ShareEntry& entry : share.entries) {
      if (!is_single_component(entry.name))
        return Error::invalid_argument(
            fmt::format("share entry name {:?} is not one path component", entry.name));
      if (entry.source.empty() || entry.source.front() != '/')
        return Error::invalid_argument(
            fmt::format("share entry source {:?} is not an absolute path", entry.source));
      struct stat source {};
      if (::stat(entry.source.c_str(), &source) != 0)
        return Error::last_os_error(fmt::format("shared path {}", entry.source));
      if (!S_ISDIR(source.st_mode) && !S_ISREG(source.st_mode))
        return Error::invalid_argument(
            fmt::format("shared path {} is neither a directory nor a regular file", entry.source));
      std::string target = share.host_path + "/" + entry.name;
      KILN_TRY(make_mount_point(target, S_ISDIR(source.st_mode)));
      binds.push_back(
          {.source = entry.source, .target = target, .read_only = entry.read_only || share.read_only});
    }
  }
  return binds;
}

}  // namespace kiln::engine

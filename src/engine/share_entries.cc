#include "engine/share_entries.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "common/unique_fd.h"

namespace kiln::engine {

namespace {

bool is_single_component(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

// Whether the entry's source is a directory (else a regular file); checked as check_share_entries says.
Result<bool> check_entry(const ShareEntry& entry) {
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
  return S_ISDIR(source.st_mode);
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

Result<void> check_share_entries(const std::vector<ShareEntry>& entries,
                                 const std::vector<ShareEntry>& existing) {
  std::set<std::string> names;
  for (const ShareEntry& entry : existing) names.insert(entry.name);
  for (const ShareEntry& entry : entries) {
    KILN_TRY(check_entry(entry));
    if (!names.insert(entry.name).second)
      return Error::invalid_argument(fmt::format("share entry name {:?} is used twice", entry.name));
  }
  return ok();
}

Result<std::vector<PrivateBind>> prepare_share_entries(const ShareSpec& share,
                                                       const std::vector<ShareEntry>& entries) {
  KILN_TRY(check_share_entries(entries));
  std::vector<PrivateBind> binds;
  for (const ShareEntry& entry : entries) {
    bool directory = KILN_TRY(check_entry(entry));
    std::string target = share.host_path + "/" + entry.name;
    KILN_TRY(make_mount_point(target, directory));
    binds.push_back(
        {.source = entry.source, .target = target, .read_only = entry.read_only || share.read_only});
  }
  return binds;
}

Result<std::vector<PrivateBind>> prepare_share_entries(const VmSpec& spec) {
  std::vector<PrivateBind> binds;
  for (const ShareSpec& share : spec.shares) {
    std::vector<PrivateBind> more = KILN_TRY(prepare_share_entries(share, share.entries));
    binds.insert(binds.end(), more.begin(), more.end());
  }
  return binds;
}

Result<void> check_late_share_entries(const ShareSpec& share, const std::vector<ShareEntry>& entries) {
  if (!share.late_entries) {
    return Error::failed_precondition(
        fmt::format("share {} was not launched to take entries while it runs (late_entries)", share.tag));
  }
  return check_share_entries(entries, share.entries);
}

Result<std::vector<PrivateBind>> prepare_late_share_entries(const ShareSpec& share,
                                                            const std::vector<ShareEntry>& entries) {
  KILN_TRY(check_late_share_entries(share, entries));
  return prepare_share_entries(share, entries);
}

Result<void> bind_into_monitor(pid_t pid, int pidfd, const std::vector<PrivateBind>& binds) {
  if (binds.empty()) return ok();
  std::string path = fmt::format("/proc/{}/ns/mnt", pid);
  UniqueFd mount_namespace(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!mount_namespace)
    return Error::last_os_error(fmt::format("open the monitor's mount namespace {}", path));
  // Opened by pid: the monitor's pidfd not being readable yet shows that pid was still the monitor.
  pollfd exited{.fd = pidfd, .events = POLLIN, .revents = 0};
  if (::poll(&exited, 1, 0) != 0) return Error::failed_precondition("the VM's monitor has exited");
  struct stat theirs {
  }, ours{};
  if (::fstat(mount_namespace.get(), &theirs) != 0 || ::stat("/proc/self/ns/mnt", &ours) != 0)
    return Error::last_os_error("compare mount namespaces");
  if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) {
    // Binding there would change the host's own mount table.
    return Error::failed_precondition(fmt::format(
        "the VM's monitor (pid {}) has no mount namespace of its own (launched without share entries or "
        "late_entries)",
        pid));
  }
  return add_private_binds(mount_namespace.get(), binds);
}

}  // namespace kiln::engine

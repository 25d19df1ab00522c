#include "agent/container_setup.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>

#include "agent/protocol/linux_capabilities.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

int read_last_capability() {
  auto text = read_file("/proc/sys/kernel/cap_last_cap", 64);
  if (!text) return kLinuxCapabilityCount - 1;
  int value = 0;
  for (char c : *text) {
    if (c < '0' || c > '9') break;
    value = value * 10 + (c - '0');
  }
  return value > 0 && value < 64 ? value : kLinuxCapabilityCount - 1;
}

bool mkdir_if_missing(const char* path) {
  return ::mkdir(path, 0755) == 0 || errno == EEXIST;
}

}  // namespace

int container_clone_flags() {
  return CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
}

Result<ContainerPlan> plan_container(const ContainerSpec& spec) {
  struct stat st {};
  if (::stat(spec.root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error::invalid_argument(fmt::format("container root {} is not a directory", spec.root));
  ContainerPlan plan;
  plan.root = spec.root;
  while (plan.root.size() > 1 && plan.root.back() == '/') plan.root.pop_back();
  plan.hostname = spec.hostname;
  plan.privileged = spec.privileged;
  plan.read_only_root = spec.read_only_root;
  plan.last_capability = read_last_capability();
  for (const std::string& name : spec.capabilities) {
    auto number = capability_number(name);
    if (!number) return Error::invalid_argument(fmt::format("unknown capability: {}", name));
    plan.capabilities |= uint64_t{1} << *number;
  }
  const std::string& root = plan.root;
  constexpr unsigned long kNoDevices = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  // What runc gives a Docker container by default (the OCI runtime spec's default mounts and devices).
  plan.mounts = {
      {"proc", root + "/proc", "proc", kNoDevices, ""},
      {"sysfs", root + "/sys", "sysfs",
       kNoDevices | (spec.privileged ? 0UL : static_cast<unsigned long>(MS_RDONLY)), ""},
      {"tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"},
  };
  constexpr mode_t kCharDevice = S_IFCHR | 0666;
  plan.nodes = {
      {root + "/dev/null", kCharDevice, makedev(1, 3)},    {root + "/dev/zero", kCharDevice, makedev(1, 5)},
      {root + "/dev/full", kCharDevice, makedev(1, 7)},    {root + "/dev/random", kCharDevice, makedev(1, 8)},
      {root + "/dev/urandom", kCharDevice, makedev(1, 9)}, {root + "/dev/tty", kCharDevice, makedev(5, 0)},
  };
  plan.links = {
      {"/proc/self/fd", root + "/dev/fd"},       {"/proc/self/fd/0", root + "/dev/stdin"},
      {"/proc/self/fd/1", root + "/dev/stdout"}, {"/proc/self/fd/2", root + "/dev/stderr"},
      {"pts/ptmx", root + "/dev/ptmx"},          {"/proc/kcore", root + "/dev/core"},
  };
  plan.late_mounts = {
      // The VM's own devpts, not a new instance as runc mounts: the agent opens a tty process's pty before
      // the
      // container exists, and its /dev/pts/N must be there for ttyname() (`tty`, shells' job control). The
      // VM is the isolation boundary; its only ptys are this container's.
      {"/dev/pts", root + "/dev/pts", "", MS_BIND, ""},
      {"shm", root + "/dev/shm", "tmpfs", kNoDevices, "mode=1777,size=65536k"},
      {"mqueue", root + "/dev/mqueue", "mqueue", kNoDevices, ""},
  };
  return plan;
}

ContainerFailure apply_container_plan(const ContainerPlan& plan) {
  auto mount_one = [](const ContainerPlan::Mount& m) -> ContainerFailure {
    if (!mkdir_if_missing(m.target.c_str())) return {ContainerStage::kMkdir, errno};
    if (::mount(m.source.c_str(), m.target.c_str(), m.fstype.c_str(), m.flags,
                m.data.empty() ? nullptr : m.data.c_str()) != 0)
      return {ContainerStage::kMount, errno};
    return {static_cast<ContainerStage>(0), 0};
  };
  // Nothing mounted below here may reach the VM's own mount table, and pivot_root needs the root to be a
  // mount point of its own.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return {ContainerStage::kPrivateMounts, errno};
  if (::mount(plan.root.c_str(), plan.root.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return {ContainerStage::kBindRoot, errno};
  for (const auto& m : plan.mounts) {
    if (auto failure = mount_one(m); failure.errnum != 0) return failure;
  }
  for (const auto& node : plan.nodes) {
    if (::mknod(node.path.c_str(), node.mode, node.device) != 0 && errno != EEXIST)
      return {ContainerStage::kMknod, errno};
    (void)::chmod(node.path.c_str(), node.mode & 07777);  // the umask must not narrow 0666
  }
  for (const auto& link : plan.links) {
    if (::symlink(link.target.c_str(), link.path.c_str()) != 0 && errno != EEXIST)
      return {ContainerStage::kSymlink, errno};
  }
  for (const auto& m : plan.late_mounts) {
    if (auto failure = mount_one(m); failure.errnum != 0) return failure;
  }
  if (!plan.hostname.empty() && ::sethostname(plan.hostname.data(), plan.hostname.size()) != 0)
    return {ContainerStage::kHostname, errno};
  // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the container's.
  if (::chdir(plan.root.c_str()) != 0) return {ContainerStage::kPivotRoot, errno};
  if (::syscall(SYS_pivot_root, ".", ".") == 0) {
    if (::umount2(".", MNT_DETACH) != 0) return {ContainerStage::kPivotRoot, errno};
  } else if (errno == EINVAL) {
    // The VM's root is the initramfs (rootfs), which pivot_root refuses to move: move the container's root
    // over "/" in this private namespace and chroot into it instead, as runc does with no_pivot_root.
    if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return {ContainerStage::kPivotRoot, errno};
    if (::chroot(".") != 0) return {ContainerStage::kPivotRoot, errno};
  } else {
    return {ContainerStage::kPivotRoot, errno};
  }
  if (::chdir("/") != 0) return {ContainerStage::kPivotRoot, errno};
  if (plan.read_only_root && ::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0)
    return {ContainerStage::kReadOnlyRoot, errno};
  if (!plan.privileged) {
    for (int cap = 0; cap <= plan.last_capability; ++cap) {
      if ((plan.capabilities >> cap) & 1) continue;
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
        return {ContainerStage::kBoundingSet, errno};
    }
  }
  return {static_cast<ContainerStage>(0), 0};
}

int apply_container_capabilities(const ContainerPlan& plan) {
  if (plan.privileged) return 0;
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[2] = {};
  // After a setuid away from root the kernel has already cleared the sets; capget keeps that.
  if (::syscall(SYS_capget, &header, data) != 0) return errno;
  for (int i = 0; i < 2; ++i) {
    auto keep = static_cast<uint32_t>(plan.capabilities >> (32 * i));
    data[i].effective &= keep;
    data[i].permitted &= keep;
    data[i].inheritable &= keep;
  }
  if (::syscall(SYS_capset, &header, data) != 0) return errno;
  return 0;
}

Error describe_container_failure(ContainerStage stage, int errnum, const ContainerPlan& plan) {
  switch (stage) {
    case ContainerStage::kPrivateMounts:
      return Error::from_errno("make the container's mounts private", errnum);
    case ContainerStage::kBindRoot:
      return Error::from_errno(fmt::format("bind the container root {}", plan.root), errnum);
    case ContainerStage::kMkdir:
    case ContainerStage::kMount:
      return Error::from_errno(fmt::format("mount the container's /proc, /sys or /dev under {}", plan.root),
                               errnum);
    case ContainerStage::kMknod:
    case ContainerStage::kSymlink:
      return Error::from_errno("populate the container's /dev", errnum);
    case ContainerStage::kHostname:
      return Error::from_errno(fmt::format("set the container hostname {}", plan.hostname), errnum);
    case ContainerStage::kPivotRoot:
      return Error::from_errno(fmt::format("pivot_root into {}", plan.root), errnum);
    case ContainerStage::kReadOnlyRoot:
      return Error::from_errno("remount the container root read-only", errnum);
    case ContainerStage::kBoundingSet:
      return Error::from_errno("drop capabilities", errnum);
  }
  return Error::from_errno("set up the container", errnum);
}

}  // namespace kiln::agent

namespace kiln::agent {
namespace {

// `path` (relative, e.g. "etc/passwd") read inside `root` as if it were "/": openat2(RESOLVE_IN_ROOT) keeps
// absolute symlinks and ".." inside. A missing file reads as empty, as for images without one.
Result<std::string> read_in_root(const std::string& root, const char* path) {
  UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return Error::last_os_error(fmt::format("open {}", root));
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, root_fd.get(), path, &how, sizeof how)));
  if (!fd) {
    if (errno == ENOENT) return std::string();
    return Error::last_os_error(fmt::format("open /{} in the container", path));
  }
  return read_to_end(fd.get());
}

// Writes `content` to `path` (relative) inside `root`: the parent directory is resolved as if `root` were "/"
// (a missing one level deep, as /etc may be, is made); a symlink or other non-file in the file's place is
// replaced, so a hostile image can aim nothing at the VM's files.
Result<void> write_in_root(const std::string& root, const std::string& path, const std::string& content) {
  UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return Error::last_os_error(fmt::format("open {}", root));
  size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  auto open_parent = [&] {
    return UniqueFd(
        static_cast<int>(::syscall(SYS_openat2, root_fd.get(), parent.c_str(), &how, sizeof how)));
  };
  UniqueFd parent_fd = open_parent();
  if (!parent_fd && errno == ENOENT && parent.find('/') == std::string::npos) {
    (void)::mkdirat(root_fd.get(), parent.c_str(), 0755);
    parent_fd = open_parent();
  }
  if (!parent_fd) return Error::last_os_error(fmt::format("open /{} in the container", parent));
  struct stat st {};
  if (::fstatat(parent_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
    if (::unlinkat(parent_fd.get(), name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0)
      return Error::last_os_error(fmt::format("replace /{} in the container", path));
  }
  UniqueFd fd(
      ::openat(parent_fd.get(), name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return Error::last_os_error(fmt::format("write /{} in the container", path));
  std::string_view left = content;
  while (!left.empty()) {
    ssize_t written = ::write(fd.get(), left.data(), left.size());
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return Error::last_os_error(fmt::format("write /{} in the container", path));
    left.remove_prefix(static_cast<size_t>(written));
  }
  return ok();
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::optional<uint32_t> parse_id(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value >= 0xffffffffULL) return std::nullopt;  // (uid_t)-1 means "unchanged" to the kernel
  return static_cast<uint32_t>(value);
}

// name:x:uid:gid:gecos:home:shell (passwd) or name:x:gid:members (group); malformed lines are skipped,
// as libcontainer does.
template <typename Visit>
void for_each_entry(const std::string& file, size_t min_fields, Visit visit) {
  for (std::string_view line : split(file, '\n')) {
    if (line.empty() || line.front() == '#') continue;
    auto fields = split(line, ':');
    if (fields.size() >= min_fields) visit(fields);
  }
}

}  // namespace

Result<void> write_container_files(const std::string& root, const std::map<std::string, std::string>& files) {
  for (const auto& [path, content] : files) KILN_TRY(write_in_root(root, path, content));
  return ok();
}

Result<ContainerUser> resolve_container_user(const std::string& root, std::string_view user) {
  ContainerUser resolved;
  if (user.empty()) user = "0";
  size_t colon = user.find(':');
  std::string_view user_part = user.substr(0, colon);
  std::optional<std::string_view> group_part;
  if (colon != std::string_view::npos) group_part = user.substr(colon + 1);
  if (user_part.empty()) user_part = "0";

  std::string passwd = KILN_TRY(read_in_root(root, "etc/passwd"));
  auto numeric_uid = parse_id(user_part);
  std::string name;
  bool found = false;
  for_each_entry(passwd, 7, [&](const std::vector<std::string_view>& f) {
    if (found) return;
    auto uid = parse_id(f[2]);
    auto gid = parse_id(f[3]);
    if (!uid || !gid) return;
    if (numeric_uid ? *uid == *numeric_uid : f[0] == user_part) {
      found = true;
      name = std::string(f[0]);
      resolved.uid = *uid;
      resolved.gid = *gid;
      resolved.home = f[5].empty() ? "/" : std::string(f[5]);
    }
  });
  if (!found) {
    if (!numeric_uid)
      return Error::invalid_argument(
          fmt::format("unable to find user {}: no matching entries in passwd file", user_part));
    resolved.uid = *numeric_uid;
    resolved.gid = 0;
  }

  std::string group = KILN_TRY(read_in_root(root, "etc/group"));
  if (group_part) {
    if (auto gid = parse_id(*group_part)) {
      resolved.gid = *gid;
    } else {
      bool group_found = false;
      for_each_entry(group, 3, [&](const std::vector<std::string_view>& f) {
        auto gid = parse_id(f[2]);
        if (!group_found && gid && f[0] == *group_part) {
          group_found = true;
          resolved.gid = *gid;
        }
      });
      if (!group_found)
        return Error::invalid_argument(
            fmt::format("unable to find group {}: no matching entries in group file", *group_part));
    }
  }
  if (!name.empty()) {
    for_each_entry(group, 4, [&](const std::vector<std::string_view>& f) {
      auto gid = parse_id(f[2]);
      if (!gid) return;
      for (std::string_view member : split(f[3], ',')) {
        if (member == name &&
            std::find(resolved.groups.begin(), resolved.groups.end(), *gid) == resolved.groups.end())
          resolved.groups.push_back(*gid);
      }
    });
  }
  // As runc sets them under dockerd: the primary group is among the supplementary ones too (`id` shows it).
  if (std::find(resolved.groups.begin(), resolved.groups.end(), resolved.gid) == resolved.groups.end())
    resolved.groups.push_back(resolved.gid);
  return resolved;
}

}  // namespace kiln::agent

#include "agent/pid1.h"

#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "agent/guest_mounts.h"
#include "agent/root_disk.h"
#include "common/error.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

struct MountPoint {
  const char* source;
  const char* target;
  const char* type;
  unsigned long flags;
  const char* data;
  mode_t mode;
};

// What finding a root disk needs (the kernel command line, sysfs, device nodes). These move with a root
// switch (root_disk.cc); everything else is mounted afterwards, in whichever root won.
constexpr MountPoint kEarlyMounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0555},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0555},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
};

// Order matters: /dev before /dev/pts and /dev/shm.
constexpr MountPoint kLateMounts[] = {
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5",
     0755},
    {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
};

void warn_errno(std::string_view what) {
  log::warn("init step failed", {{"error", Error::last_os_error(what).message()}});
}

template <size_t N>
void mount_filesystems(const MountPoint (&mounts)[N]) {
  for (const MountPoint& point : mounts) {
    if (::mkdir(point.target, point.mode) != 0 && errno != EEXIST)
      warn_errno(fmt::format("mkdir {}", point.target));
    if (::mount(point.source, point.target, point.type, point.flags, point.data) != 0 && errno != EBUSY) {
      warn_errno(fmt::format("mount {} on {}", point.type, point.target));
    }
  }
}

void link_devices() {
  // With a private devpts instance, /dev/ptmx must point into it (Documentation/filesystems/devpts.rst).
  (void)::unlink("/dev/ptmx");
  const std::pair<const char*, const char*> links[] = {
      {"pts/ptmx", "/dev/ptmx"},          {"/proc/self/fd", "/dev/fd"},
      {"/proc/self/fd/0", "/dev/stdin"},  {"/proc/self/fd/1", "/dev/stdout"},
      {"/proc/self/fd/2", "/dev/stderr"},
  };
  for (auto [target, path] : links) {
    if (::symlink(target, path) != 0 && errno != EEXIST) warn_errno(fmt::format("symlink {}", path));
  }
}

// The kernel gives init /dev/console as stdio only if the initramfs has that node; after devtmpfs it exists.
void attach_console() {
  if (::fcntl(2, F_GETFD) >= 0) return;
  int console = ::open("/dev/console", O_RDWR | O_NOCTTY);
  if (console < 0) return;
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0) (void)::dup2(console, fd);
  }
  if (console > 2) (void)::close(console);
}

void bring_up_loopback() {
  UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket) return warn_errno("socket for lo");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(socket.get(), SIOCGIFFLAGS, &request) != 0) return warn_errno("SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(socket.get(), SIOCSIFFLAGS, &request) != 0) warn_errno("SIOCSIFFLAGS lo");
}

std::optional<RootDiskStatus> boot_into_root_disk() {
  auto cmdline = read_file("/proc/cmdline", 64 * 1024);
  if (!cmdline) {
    log::warn("init step failed", {{"error", cmdline.error().message()}});
    return std::nullopt;
  }
  auto serial = root_serial_from_cmdline(*cmdline);
  if (!serial) return std::nullopt;
  return switch_to_root_disk(*serial);
}

}  // namespace

std::optional<RootDiskStatus> prepare_system() {
  ::umask(022);
  mount_filesystems(kEarlyMounts);
  // Early, so a root-disk failure reaches the console log.
  attach_console();
  std::optional<RootDiskStatus> root = boot_into_root_disk();
  mount_filesystems(kLateMounts);
  link_devices();
  if (::sethostname(kDefaultHostname, std::strlen(kDefaultHostname)) != 0) warn_errno("sethostname");
  bring_up_loopback();
  // PID 1's own environment: children get theirs from the spec (spawn.cc), this is for the agent's logs only.
  // NOLINTNEXTLINE(concurrency-mt-unsafe): PID 1 has started no thread yet
  (void)::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  return root;
}

namespace {

// Without a power-off driver (on x86: ACPI) the kernel turns RB_POWER_OFF into a halt, which leaves the VMM
// running a stopped CPU. Kiln's guest kernel has no ACPI and boots with reboot=t, and the VMM runs with
// -no-reboot, so there a reboot is what ends the VM.
bool kernel_can_power_off() {
  return ::access("/sys/firmware/acpi", F_OK) == 0;
}

// SIGKILL is delivered asynchronously: a dying process may still hold files open for writing, and then the
// read-only remount fails with EBUSY. Every process is PID 1's child or orphan, so reaping until ECHILD
// means they are all gone.
void reap_everything(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    pid_t pid = ::waitpid(-1, nullptr, WNOHANG);
    if (pid > 0) continue;
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0 || std::chrono::steady_clock::now() >= deadline) return;  // ECHILD: none left
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

void power_off(bool reboot) {
  // kill(-1) reaches every process but PID 1 itself.
  (void)::kill(-1, SIGKILL);
  reap_everything(std::chrono::seconds(2));
  ::sync();
  remount_block_filesystems_read_only();
  if (!reboot && !kernel_can_power_off()) {
    log::info("no power-off driver in this kernel: rebooting instead (the VMM's -no-reboot ends the VM)");
    reboot = true;
  }
  log::info(reboot ? "rebooting" : "powering off");
  ::reboot(reboot ? RB_AUTOBOOT : RB_POWER_OFF);
  warn_errno("reboot");
  for (;;) ::pause();
}

}  // namespace kiln::agent

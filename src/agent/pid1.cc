#include "agent/pid1.h"

#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

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

// Order matters: /dev before /dev/pts and /dev/shm.
constexpr MountPoint kMounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0555},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0555},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5",
     0755},
    {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
};

void warn_errno(std::string_view what) {
  log::warn("init step failed", {{"error", Error::last_os_error(what).message()}});
}

void mount_filesystems() {
  for (const MountPoint& point : kMounts) {
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

}  // namespace

void prepare_system() {
  ::umask(022);
  mount_filesystems();
  link_devices();
  attach_console();
  if (::sethostname(kDefaultHostname, std::strlen(kDefaultHostname)) != 0) warn_errno("sethostname");
  bring_up_loopback();
  // PID 1's own environment: children get theirs from the spec (spawn.cc), this is for the agent's logs only.
  (void)::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 1);  // NOLINT: before any thread
}

namespace {

// Without a power-off driver (on x86: ACPI) the kernel turns RB_POWER_OFF into a halt, which leaves the VMM
// running a stopped CPU. Kiln's guest kernel has no ACPI and boots with reboot=t, and the VMM runs with
// -no-reboot, so there a reboot is what ends the VM.
bool kernel_can_power_off() {
  return ::access("/sys/firmware/acpi", F_OK) == 0;
}

}  // namespace

void power_off(bool reboot) {
  // kill(-1) reaches every process but PID 1 itself.
  (void)::kill(-1, SIGKILL);
  ::sync();
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

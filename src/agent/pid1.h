// What kiln-agent does only as PID 1 of the guest: the mounts and device links a userland expects, console
// stdio, the hostname, the loopback interface, and powering the VM off. Each setup step is best effort:
// a failure is logged and the rest still runs, because PID 1 exiting would panic the guest kernel.
// Called from main() on the agent's one thread.
#pragma once

#include <optional>

#include "agent/protocol/messages.h"

namespace kiln::agent {

inline constexpr const char* kDefaultHostname = "kiln";

// /proc, /sys, /dev (devtmpfs); then, if the kernel command line has kiln.root=SERIAL, the switch into that
// disk (root_disk.h), whose outcome is returned; then /dev/pts (newinstance, ptmxmode=0666) with /dev/ptmx
// linked to it, /dev/shm, /tmp, /run; /dev/fd and /dev/std{in,out,err}; stdio on /dev/console; hostname;
// lo up.
std::optional<RootDiskStatus> prepare_system();

// Kills every remaining process, syncs, remounts block-backed filesystems read-only (a root disk must be
// clean for the next boot), and powers off, or reboots when asked to or when the kernel has no power-off
// driver (no ACPI: it would only halt). Never returns: if reboot() fails, PID 1 waits forever rather than
// exit and panic.
[[noreturn]] void power_off(bool reboot);

}  // namespace kiln::agent

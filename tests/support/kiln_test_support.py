"""Helpers the Python suites share (tests/vm, tests/cli, tests/daemon, tests/image): finding the QEMU
processes a test started, and reading a pseudo-terminal until some output appears."""
import os
import select
import subprocess
import time


def pids_running(program, marker):
    """Pids of processes whose command line contains `program` and `marker` (bytes)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if program in cmdline and marker in cmdline:
            pids.append(int(pid))
    return pids


def qemu_pids_naming(marker):
    """Pids of QEMU processes whose command line contains `marker` (a test's scratch or run directory)."""
    return pids_running(b"qemu-system", marker.encode())


def release_kiln_network(run_dir):
    """Ends what a test kilnd's networking leaves on purpose (it outlives kilnd, as the VMs do): the outbound
    NAT (slirp4netns) of its network namespace, and the namespace's pin under `run_dir`/net."""
    for pid in pids_running(b"slirp4netns", os.path.join(run_dir, "net").encode()):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    pin = os.path.join(run_dir, "net", "netns")
    if os.path.ismount(pin) or os.path.exists(pin):
        subprocess.run(["umount", "-l", pin], stderr=subprocess.DEVNULL, check=False)


class PtyReader:
    """Collects what a pseudo-terminal's master side receives, in `output`."""

    def __init__(self, master):
        self.master = master
        self.output = b""

    def read_until(self, marker, deadline):
        """Reads until `marker` has arrived; AssertionError once time.monotonic() passes `deadline`. Returns
        quietly at EOF (the caller's assertions then say what was missing)."""
        while marker not in self.output:
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out waiting for {marker!r}; got {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                self.output += chunk

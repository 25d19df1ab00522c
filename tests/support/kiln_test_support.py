"""Helpers the Python suites share (tests/vm, tests/cli, tests/daemon, tests/image): finding the QEMU
processes a test started, and reading a pseudo-terminal until some output appears."""
import os
import select
import time


def qemu_pids_naming(marker):
    """Pids of QEMU processes whose command line contains `marker` (a test's scratch or run directory)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"qemu-system" in cmdline and marker.encode() in cmdline:
            pids.append(int(pid))
    return pids


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

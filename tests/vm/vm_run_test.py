"""`kiln vm run`: a command runs inside its own Linux VM with stdio and exit code as if run locally.

Real VMs under QEMU (TCG here). Each test gets its own TMPDIR and initramfs cache, so leftovers show.
"""
import fcntl
import hashlib
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

BIN_DIR = os.environ.get("KILN_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/dev/bin"))
KILN = os.path.join(BIN_DIR, "kiln")
TIMEOUT = 240
# Fork templates `kiln vm run` builds on first need: shared by this build's test processes (a template is
# built once, not once per test), never the machine's /var/lib/kiln/templates.
TEMPLATE_DIR = os.path.join(BIN_DIR, "..", "test-templates")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../support"))
from kiln_test_support import PtyReader  # noqa: E402


class KilnCase(unittest.TestCase):
    def setUp(self):
        self.scratch = tempfile.TemporaryDirectory(prefix="kiln-vmtest-")
        self.tmpdir = os.path.join(self.scratch.name, "tmp")
        os.mkdir(self.tmpdir)
        self.env = dict(os.environ, TMPDIR=self.tmpdir, KILN_CACHE_DIR=os.path.join(self.scratch.name, "cache"),
                        KILN_TEMPLATE_DIR=TEMPLATE_DIR)
        self.env.pop("KILN_KERNEL", None)

    def tearDown(self):
        self.scratch.cleanup()

    def kiln(self, *args, input=None, env=None, timeout=TIMEOUT):
        return subprocess.run([KILN, *args], input=input, capture_output=True, env=env or self.env, timeout=timeout)

    def assertNoLeftovers(self):
        self.assertEqual(os.listdir(self.tmpdir), [], "kiln left temporary files behind")


class VmRunTest(KilnCase):
    def test_uname_shows_kiln_kernel(self):
        result = self.kiln("vm", "run", "--", "uname", "-r")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout.decode().strip(), r"^6\.1\.\d+.*-kiln$")
        self.assertNoLeftovers()

    def test_exit_codes_propagate(self):
        self.assertEqual(self.kiln("vm", "run", "--", "sh", "-c", "exit 7").returncode, 7)
        self.assertEqual(self.kiln("vm", "run", "--", "true").returncode, 0)

    def test_killed_by_signal_exits_128_plus_n(self):
        result = self.kiln("vm", "run", "--", "sh", "-c", "kill -TERM $$")
        self.assertEqual(result.returncode, 143, result.stderr)

    def test_stdin_8mib_hashes_like_the_host(self):
        data = os.urandom(8 << 20)
        result = self.kiln("vm", "run", "-i", "--", "sha256sum", input=data)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.decode().split()[0], hashlib.sha256(data).hexdigest())

    def test_output_8mib_intact_and_streams_separate(self):
        # The guest writes 8 MiB of random bytes to stdout and their hash to stderr.
        script = "head -c 8388608 /dev/urandom > /tmp/blob; sha256sum /tmp/blob >&2; cat /tmp/blob"
        result = self.kiln("vm", "run", "--memory", "256M", "--", "sh", "-c", script)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(result.stdout), 8 << 20)
        self.assertEqual(result.stderr.decode().split()[0], hashlib.sha256(result.stdout).hexdigest())

    def test_environment_and_working_directory(self):
        result = self.kiln("vm", "run", "-e", "GREETING=hello world", "-w", "/tmp", "--",
                           "sh", "-c", 'echo "$GREETING"; pwd')
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.decode(), "hello world\n/tmp\n")

    def test_command_not_found_exits_127(self):
        result = self.kiln("vm", "run", "--", "/no/such/command")
        self.assertEqual(result.returncode, 127)
        self.assertIn("no/such/command", result.stderr.decode())

    def test_tty_mode_and_resize(self):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        # The guest polls for the new size (the resize travels asynchronously), then prints it.
        script = ("tty >/dev/null && echo IS-A-TTY; stty size; "
                  "while [ \"$(stty size)\" = '24 80' ]; do sleep 0.1; done; stty size")
        proc = subprocess.Popen([KILN, "vm", "run", "-i", "-t", "--", "sh", "-c", script],
                                stdin=slave, stdout=slave, stderr=slave, env=self.env, start_new_session=True)
        os.close(slave)
        terminal = PtyReader(master)
        deadline = time.monotonic() + TIMEOUT
        terminal.read_until(b"24 80", deadline)
        self.assertIn(b"IS-A-TTY", terminal.output)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc.send_signal(signal.SIGWINCH)
        terminal.read_until(b"40 120", deadline)
        self.assertEqual(proc.wait(timeout=TIMEOUT), 0)
        os.close(master)

    def test_ctrl_c_reaches_the_guest_process(self):
        proc = subprocess.Popen([KILN, "vm", "run", "--", "sh", "-c", "echo ready; exec sleep 600"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        self.assertEqual(proc.stdout.readline(), b"ready\n")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT)
        self.assertEqual(proc.returncode, 130)
        self.assertNoLeftovers()

    def test_closed_output_pipe_ends_the_command_and_the_vm(self):
        # `kiln vm run -- yes | head -1` as a shell runs it: kiln must end once head has its line and
        # exits, as a local `yes | head -1` does.
        shell = subprocess.Popen(["bash", "-c", f"set -o pipefail; '{KILN}' vm run -- yes | head -1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                 start_new_session=True)
        try:
            out, err = shell.communicate(timeout=120)
        finally:
            if shell.poll() is None:
                os.killpg(shell.pid, signal.SIGKILL)  # kiln too: it would outlive bash
                shell.communicate()
        self.assertEqual(out, b"y\n")
        self.assertEqual(shell.returncode, 128 + signal.SIGPIPE, err)  # yes's status, as locally
        # And with kiln watched directly: the guest's yes got SIGPIPE (kiln exits with its status, 141) and the
        # VM went down with it.
        proc = subprocess.Popen([KILN, "vm", "run", "--", "yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env)
        try:
            self.assertEqual(proc.stdout.readline(), b"y\n")
            qemus = children_of(proc.pid)
            self.assertEqual(len(qemus), 1)
            proc.stdout.close()  # the reader goes away
            self.assertIn(proc.wait(timeout=120), (128 + signal.SIGPIPE, -signal.SIGPIPE), proc.stderr.read())
            self.assertFalse(os.path.exists(f"/proc/{qemus[0]}"), "the VM outlived kiln")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        self.assertNoLeftovers()

    def test_three_vms_in_parallel(self):
        procs = [subprocess.Popen([KILN, "vm", "run", "--", "sh", "-c", f"echo vm{i}; exit {i}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env) for i in range(3)]
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=TIMEOUT)
            self.assertEqual(proc.returncode, i, err)
            self.assertEqual(out, f"vm{i}\n".encode())
        self.assertNoLeftovers()


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


class VmRunForkTest(KilnCase):
    """`kiln vm run` forks from a template by default (docs/fork.md); --boot=cold boots."""

    DRAW = "head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /etc/machine-id"

    def test_forked_runs_have_their_own_randomness_and_machine_id(self):
        first = self.kiln("vm", "run", "--", "sh", "-c", self.DRAW)
        second = self.kiln("vm", "run", "--", "sh", "-c", self.DRAW)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual(first.stderr, b"")  # template building and restoring are not the user's output
        a, b = first.stdout.decode().split(), second.stdout.decode().split()
        self.assertEqual(len(a), 2, first.stdout)
        self.assertNotEqual(a[0], b[0])
        self.assertRegex(a[1], "^[0-9a-f]{32}$")
        self.assertNotEqual(a[1], b[1])
        # The template the runs forked from is on disk under its key, a format-2 template manifest.
        manifests = [os.path.join(TEMPLATE_DIR, key, "snapshot.json") for key in os.listdir(TEMPLATE_DIR)
                     if not key.startswith(".")]
        roles = {json.load(open(path))["role"] for path in manifests if os.path.exists(path)}
        self.assertEqual(roles, {"template"})

    def test_cold_boot_is_selectable_and_bad_modes_are_refused(self):
        cold = self.kiln("vm", "run", "--boot=cold", "--", "echo", "cold")
        self.assertEqual((cold.returncode, cold.stdout), (0, b"cold\n"), cold.stderr)
        bad = self.kiln("vm", "run", "--boot=warm", "--", "true")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn(b"--boot", bad.stderr)
        self.assertNoLeftovers()

    def test_a_vm_with_a_disk_sees_the_disks_own_size(self):
        # A template's slot would show the placeholder's size: a VM with a --disk boots instead.
        disk = os.path.join(self.scratch.name, "data.img")
        with open(disk, "wb") as f:
            f.truncate(48 << 20)
        run = self.kiln("vm", "run", "--disk", disk, "--", "cat", "/sys/block/vda/size")
        self.assertEqual((run.returncode, run.stdout), (0, b"%d\n" % ((48 << 20) // 512)), run.stderr)

    def test_a_vm_with_a_volume_boots_cold_and_works(self):
        share = os.path.join(self.scratch.name, "share")
        os.mkdir(share)
        with open(os.path.join(share, "f"), "w") as f:
            f.write("shared\n")
        run = self.kiln("vm", "run", "-v", share + ":/mnt/s", "--", "cat", "/mnt/s/f")
        self.assertEqual((run.returncode, run.stdout), (0, b"shared\n"), run.stderr)


class VmRunFaultTest(KilnCase):
    def assertOneLineError(self, result):
        self.assertNotEqual(result.returncode, 0)
        err = result.stderr.decode().strip()
        self.assertEqual(len(err.splitlines()), 1, f"expected one line, got: {err!r}")
        self.assertTrue(err.startswith("kiln: "), err)
        return err

    def test_qemu_killed_mid_command(self):
        proc = subprocess.Popen([KILN, "vm", "run", "--", "sh", "-c", "echo ready; exec sleep 600"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        self.assertEqual(proc.stdout.readline(), b"ready\n")
        qemus = children_of(proc.pid)
        self.assertEqual(len(qemus), 1)
        os.kill(qemus[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"VM", err)
        self.assertEqual(len(err.decode().strip().splitlines()), 1, err)
        self.assertFalse(os.path.exists(f"/proc/{qemus[0]}"), "QEMU was not reaped")
        self.assertNoLeftovers()

    def test_missing_kernel(self):
        err = self.assertOneLineError(self.kiln("vm", "run", "--kernel", "/nonexistent/bzImage", "--", "true"))
        self.assertIn("/nonexistent/bzImage", err)
        self.assertNoLeftovers()

    def test_corrupt_initramfs(self):
        bad = os.path.join(self.scratch.name, "bad.cpio")
        with open(bad, "wb") as f:
            f.write(os.urandom(4096))
        err = self.assertOneLineError(self.kiln("vm", "run", "--initrd", bad, "--", "true"))
        self.assertIn("VM", err)
        self.assertNoLeftovers()

    def test_missing_qemu_binary(self):
        env = dict(self.env, KILN_QEMU="/nonexistent/qemu-system-x86_64")
        err = self.assertOneLineError(self.kiln("vm", "run", "--", "true", env=env))
        self.assertIn("qemu", err.lower())

    def test_bad_arguments(self):
        self.assertOneLineError(self.kiln("vm", "run", "--memory", "12M", "--", "true"))
        self.assertOneLineError(self.kiln("vm", "run", "--memory", "lots", "--", "true"))
        self.assertOneLineError(self.kiln("vm", "run", "--cpus", "0", "--", "true"))
        self.assertOneLineError(self.kiln("vm", "run", "-e", "NOEQUALS", "--", "true"))
        self.assertOneLineError(self.kiln("vm", "run"))


if __name__ == "__main__":
    unittest.main()

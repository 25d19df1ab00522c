"""`kiln vm create|ls|inspect|start|stop|...|exec|console|ip` against a real kilnd and real VMs.

Each test class starts its own kilnd (--root and --run-dir in a fresh temporary directory) and stops it at the
end; VMs outlive kilnd by design, so any QEMU whose command line names that directory is killed afterwards.
A VM boot takes seconds under TCG with sanitizers, so each case boots at most one VM and checks several things
with it.
"""
import hashlib
import http.client
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("KILN_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/dev/bin"))
KILN = os.path.join(BIN_DIR, "kiln")
KILND = os.path.join(BIN_DIR, "kilnd")
TIMEOUT = 240

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../support"))
from kiln_test_support import PtyReader, qemu_pids_naming, release_kiln_network  # noqa: E402


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def kill_leftover_qemus(marker):
    for pid in qemu_pids_naming(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class DaemonCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="kiln-clitest-")
        cls.run_dir = os.path.join(cls.scratch, "run")
        cls.socket = os.path.join(cls.run_dir, "kiln.sock")
        cls.host = "unix://" + cls.socket
        cls.env = dict(os.environ, KILN_CACHE_DIR=os.path.join(cls.scratch, "cache"))
        cls.env.pop("KILN_HOST", None)
        cls.log = open(os.path.join(cls.scratch, "kilnd.log"), "wb")
        cls.daemon = subprocess.Popen(
            [KILND, "--root", os.path.join(cls.scratch, "root"), "--run-dir", cls.run_dir],
            stdout=cls.log, stderr=subprocess.STDOUT, env=cls.env)
        deadline = time.monotonic() + 60
        while not os.path.exists(cls.socket):
            if cls.daemon.poll() is not None or time.monotonic() > deadline:
                log = cls.daemon_log()  # before tearDownClass deletes the scratch directory holding it
                cls.tearDownClass()
                raise RuntimeError(f"kilnd did not come up; see its log:\n{log}")
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        if cls.daemon.poll() is None:
            cls.daemon.send_signal(signal.SIGTERM)
            try:
                cls.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.daemon.kill()
                cls.daemon.wait()
        kill_leftover_qemus(cls.scratch)
        release_kiln_network(cls.run_dir)  # kilnd's namespace and slirp4netns outlive it, as VMs do
        cls.log.close()
        shutil.rmtree(cls.scratch, ignore_errors=True)

    @classmethod
    def daemon_log(cls):
        with open(os.path.join(cls.scratch, "kilnd.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def kiln(self, *args, input=None, env=None, timeout=TIMEOUT):
        return subprocess.run([KILN, "-H", self.host, *args], input=input, capture_output=True,
                              env=env or self.env, timeout=timeout)

    def ok(self, *args, **kwargs):
        result = self.kiln(*args, **kwargs)
        self.assertEqual(result.returncode, 0, f"kiln {' '.join(args)}: {result.stderr.decode()}")
        return result.stdout.decode()

    def assertOneLineError(self, result, code=1):
        err = result.stderr.decode().strip()
        self.assertEqual(result.returncode, code, err)
        self.assertEqual(len(err.splitlines()), 1, f"expected one line, got: {err!r}")
        self.assertTrue(err.startswith("kiln: "), err)
        return err

    def api(self, method, target):
        """(status, parsed JSON body) of one request to kilnd's API; the body is read only for errors."""
        connection = UnixHTTPConnection(self.socket)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            body = json.loads(response.read()) if response.status >= 400 else None
            return response.status, body
        finally:
            connection.close()

    def table(self, *filters):
        """`kiln vm ls` rows as {name: {column: cell}}, cut at the header's column starts (cells may be empty)."""
        lines = self.ok("vm", "ls", *filters).splitlines()
        header = lines[0]
        starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
        columns = header.split()
        self.assertEqual(len(starts), len(columns), header)
        rows = {}
        for line in lines[1:]:
            cells = [line[start:end].strip() for start, end in zip(starts, starts[1:] + [len(line)])]
            rows[cells[0]] = dict(zip(columns, cells))
        return columns, rows

    def names(self):
        return sorted(vm["name"] for vm in json.loads(self.ok("vm", "ls", "--format", "json")))

    def create_running(self, name):
        vm_id = self.ok("vm", "create", name, "--memory", "256M", "--start").strip()
        self.assertRegex(vm_id, r"^[0-9a-f]{64}$")
        return vm_id


class VmCreateListTest(DaemonCase):
    def test_create_ls_inspect(self):
        web_id = self.ok("vm", "create", "web", "--cpus", "1", "-m", "128M", "--disk", "256M",
                         "-l", "team=a", "-l", "tier=front").strip()
        self.assertRegex(web_id, r"^[0-9a-f]{64}$")
        db_id = self.ok("vm", "create", "db", "-l", "team=b").strip()

        # Other cases of this class may share the daemon: look only at this case's VMs (label "team").
        columns, rows = self.table()
        self.assertEqual(columns, ["NAME", "ID", "STATE", "IP", "CPUS", "MEMORY", "DISK", "CREATED"])
        self.assertLessEqual({"db", "web"}, set(rows))
        web = rows["web"]
        self.assertEqual([web[c] for c in columns[1:7]], [web_id[:12], "stopped", "", "1", "128M", "256M"])
        self.assertIn("ago", web["CREATED"])

        listed = json.loads(self.ok("vm", "ls", "--format", "json", "--filter", "label=team"))
        self.assertEqual(sorted(vm["id"] for vm in listed), sorted([web_id, db_id]))
        self.assertLessEqual({web_id[:12], db_id[:12]}, set(self.ok("vm", "ls", "-q").split()))
        self.assertEqual(self.ok("vm", "ls", "-q", "--filter", "label=team=a").split(), [web_id[:12]])
        self.assertEqual(self.ok("vm", "ls", "-q", "--filter", "label=tier").split(), [web_id[:12]])
        self.assertEqual(self.ok("vm", "ls", "-q", "--filter", "name=d").split(), [db_id[:12]])
        self.assertEqual(len(self.ok("vm", "ls", "-q", "-f", "label=team", "-f", "state=stopped").split()), 2)
        self.assertEqual(self.ok("vm", "ls", "-q", "--filter", "label=team", "--filter", "state=running"), "")
        self.assertEqual(self.kiln("vm", "ls", "--filter", "colour=red").returncode, 2)

        inspected = json.loads(self.ok("vm", "inspect", "web", db_id[:12]))
        self.assertEqual([vm["name"] for vm in inspected], ["web", "db"])
        self.assertEqual(inspected[0]["labels"], {"team": "a", "tier": "front"})
        self.assertEqual((inspected[0]["memory_mib"], inspected[0]["disk_mib"]), (128, 256))
        # A missing VM: the others are still printed, the exit code says something was missing.
        partial = self.kiln("vm", "inspect", "web", "ghost")
        self.assertEqual(partial.returncode, 1)
        self.assertEqual([vm["name"] for vm in json.loads(partial.stdout)], ["web"])
        self.assertIn("no such VM: ghost", partial.stderr.decode())

        # Relative host paths are resolved against the caller's working directory.
        rootfs = os.path.join(self.scratch, "rootfs")
        os.makedirs(os.path.join(rootfs, "etc"))
        os.makedirs(os.path.join(self.scratch, "share"))
        with open(os.path.join(rootfs, "etc", "marker"), "w") as f:
            f.write("hi\n")
        made = subprocess.run([KILN, "-H", self.host, "vm", "create", "fromdir", "--from-dir", "rootfs",
                               "-v", "share:data:ro"], cwd=self.scratch, capture_output=True, env=self.env)
        self.assertEqual(made.returncode, 0, made.stderr)
        fromdir = json.loads(self.ok("vm", "inspect", "fromdir"))[0]
        self.assertEqual(fromdir["source"], {"directory": rootfs})
        self.assertEqual(fromdir["shared_folders"][0]["host_path"], os.path.join(self.scratch, "share"))
        self.assertTrue(fromdir["shared_folders"][0]["read_only"])

    def test_bad_inputs_create_nothing(self):
        before = self.names()
        self.ok("vm", "create", "only")
        err = self.assertOneLineError(self.kiln("vm", "create", "small", "--memory", "10M"))
        self.assertIn("64", err)
        err = self.assertOneLineError(self.kiln("vm", "create", "only"))
        self.assertIn("only", err)
        self.assertOneLineError(self.kiln("vm", "create", "bad/name"))
        self.assertOneLineError(self.kiln("vm", "create", "x", "--memory", "lots"))
        self.assertOneLineError(self.kiln("vm", "create", "x", "--from-dir", "/a", "--image", "b"), code=2)
        self.assertOneLineError(self.kiln("vm", "create", "x", "-v", "nocolon"))
        self.assertEqual(self.names(), sorted(before + ["only"]))

    def test_networks_and_published_ports(self):
        # What create stores; no VM runs, so no address, no chosen host port and no kilnd networking needed.
        self.ok("vm", "create", "island", "--network", "none")
        self.ok("vm", "create", "published", "--network", "bridge", "-p", "8080:80", "--publish",
                "127.0.0.1::53/udp", "-p", "[::1]:8443:443/TCP")
        island, published = json.loads(self.ok("vm", "inspect", "island", "published"))
        self.assertEqual((island["networks"], island["ports"], island["addresses"]), ([], [], []))
        self.assertEqual(published["networks"], [{"network": "bridge"}])
        self.assertEqual(published["ports"], [
            {"protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "guest_port": 80},
            {"protocol": "udp", "host_ip": "127.0.0.1", "host_port": 0, "guest_port": 53},
            {"protocol": "tcp", "host_ip": "::1", "host_port": 8443, "guest_port": 443}])
        self.assertEqual(published["addresses"], [])

        _, rows = self.table()
        self.assertEqual((rows["island"]["IP"], rows["published"]["IP"]), ("", ""))
        # kiln vm ip: one line saying why there is no address.
        err = self.assertOneLineError(self.kiln("vm", "ip", "island"))
        self.assertEqual(err, "kiln: VM island has no IP address: it is on no network")
        err = self.assertOneLineError(self.kiln("vm", "ip", "published"))
        self.assertEqual(err, "kiln: VM published is stopped: it has an IP address only while it runs")
        self.ok("vm", "rm", "island", "published")

    def test_bad_network_flags_are_refused_before_any_request(self):
        # Against an address where no kilnd listens: the flag's own error comes first, not "cannot connect".
        missing = "unix://" + os.path.join(self.scratch, "no-kilnd-here.sock")
        cases = [(["-p", "web:80"], "kiln: -p web:80: invalid hostPort: web"),
                 (["-p", "8000-8010:80"], "kiln: -p 8000-8010:80: port ranges are not supported: 8000-8010"),
                 (["-p", "80/sctp"], "kiln: -p 80/sctp: invalid proto: sctp"),
                 (["-p", "8080:0"], "kiln: -p 8080:0: invalid containerPort: 0"),
                 (["-p", "1.2.3:80:80"], "kiln: -p 1.2.3:80:80: invalid IP address: 1.2.3"),
                 (["-p", "8080:"], "kiln: -p 8080:: no port specified"),
                 (["--network", "none", "--network", "bridge"],
                  "kiln: --network none (no NIC) cannot be combined with other networks"),
                 (["--network", "bridge:10.0.0"], 'kiln: --network bridge:10.0.0: "10.0.0" is not an IPv4 address'),
                 (["--network", ":10.0.0.2"], "kiln: --network :10.0.0.2: expected NAME[:IPV4]"),
                 (["--network", "none", "-p", "80"], "kiln: -p needs a network")]
        for args, message in cases:
            result = subprocess.run([KILN, "-H", missing, "vm", "create", "nope", *args], capture_output=True,
                                    env=self.env, timeout=TIMEOUT)
            err = self.assertOneLineError(result)
            self.assertTrue(err.startswith(message), f"{args}: {err}")
        # The same against kilnd: nothing is created.
        before = self.names()
        for args, _ in cases:
            self.assertOneLineError(self.kiln("vm", "create", "nope", *args))
        self.assertEqual(self.names(), before)

    def test_unknown_vm_for_every_command(self):
        for args in (["inspect"], ["start"], ["stop"], ["stop", "-t", "1"], ["kill"], ["restart"], ["pause"],
                     ["resume"], ["rm"], ["rm", "-f"], ["console"], ["ip"], ["exec", "ghost", "true"]):
            command = ["vm", *args] + ([] if "exec" in args else ["ghost"])
            result = self.kiln(*command)
            self.assertEqual(result.returncode, 1, f"{command}: {result.stderr}")
            self.assertIn("kiln: no such VM: ghost", result.stderr.decode(), command)
            if args != ["inspect"]:
                self.assertOneLineError(result)

    def test_numbers_are_refused_not_wrapped(self):
        # "-1" used to wrap to 2^64-1 (strtoull) or throw; now every number goes through one parser and a
        # bad one is a 400 that names the parameter.
        self.ok("vm", "create", "numbers", "-m", "128M")
        for target, parameter in [("/v1/events?since=-1", "since"),
                                  ("/v1/vms/numbers/console?tail=-1", "tail"),
                                  ("/v1/vms/numbers/console?tail=99999999999999999999", "tail"),
                                  ("/v1/vms/numbers/console?tail=12abc", "tail"),
                                  ("/v1/vms/numbers/stop?t=-1", "t"),
                                  ("/v1/vms/numbers/stop?timeout=1.5", "timeout")]:
            method = "POST" if "/stop" in target else "GET"
            status, body = self.api(method, target)
            self.assertEqual(status, 400, target)
            self.assertIn(f"query parameter {parameter} must be", body["message"], target)
        self.assertEqual(self.api("GET", "/v1/vms/numbers/console?tail=0")[0], 200)
        self.assertEqual(self.api("POST", "/v1/vms/numbers/stop?t=0")[0], 200)
        # The CLI's number flags use the same parser: no wrapped "-1", no hexadecimal.
        for args in [("vm", "console", "-n", "-1", "numbers"), ("vm", "console", "-n", "0x10", "numbers"),
                     ("vm", "stop", "-t", "-1", "numbers"), ("vm", "create", "--cpus", "-1", "neg")]:
            err = self.assertOneLineError(self.kiln(*args), code=2)
            self.assertIn("must be a whole number", err, args)
        self.assertNotIn("neg", self.names())
        self.ok("vm", "rm", "numbers")

    def test_double_dash_ends_exec_options(self):
        # `kiln vm exec web -- uname -a` was a usage error (exit 2, "The following arguments were not
        # expected"); now it gets as far as asking kilnd, which is not running here.
        missing = os.path.join(self.scratch, "no-such-kilnd.sock")
        for args in [("web", "--", "uname", "-a"), ("-w", "/tmp", "web", "--", "sh", "-c", "pwd"),
                     ("--", "web", "uname")]:
            result = subprocess.run([KILN, "-H", "unix://" + missing, "vm", "exec", *args], capture_output=True,
                                    env=self.env, timeout=TIMEOUT)
            err = self.assertOneLineError(result)
            self.assertIn("cannot connect to kilnd", err, args)
        # An option before the VM's name that exec does not know is still a usage error.
        self.assertOneLineError(self.kiln("vm", "exec", "--bogus", "web", "true"), code=2)

    def test_unreachable_daemon(self):
        missing = os.path.join(self.scratch, "nowhere.sock")
        env = dict(self.env, KILN_HOST="unix://" + missing)
        result = subprocess.run([KILN, "vm", "ls"], capture_output=True, env=env, timeout=TIMEOUT)
        err = self.assertOneLineError(result)
        self.assertEqual(err, f"kiln: cannot connect to kilnd at unix://{missing}: No such file or directory"
                              " — is kilnd running?")
        # -H wins over KILN_HOST, and may follow the subcommand.
        result = subprocess.run([KILN, "vm", "ls", "-q", "-H", self.host], capture_output=True, env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertOneLineError(self.kiln("vm", "exec", "-z", "x", "true"), code=2)
        self.assertOneLineError(self.kiln("vm", "exec", "x"), code=2)


class VmExecTest(DaemonCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.started = False

    def setUp(self):
        # The first case boots the VM; later cases (when the class runs as a whole) reuse it.
        if not type(self).started:
            self.create_running("box")
            type(self).started = True

    def test_exec_streams_and_exit_codes(self):
        out = self.ok("vm", "exec", "box", "cat", "/etc/os-release")
        self.assertIn("NAME=", out)
        self.assertEqual(self.kiln("vm", "exec", "box", "sh", "-c", "exit 3").returncode, 3)
        missing = self.kiln("vm", "exec", "box", "/no/such/command")
        self.assertEqual(missing.returncode, 127, missing.stderr)
        self.assertIn(b"/no/such/command", missing.stderr)
        split = self.kiln("vm", "exec", "box", "sh", "-c", "echo to-out; echo to-err >&2")
        self.assertEqual((split.stdout, split.stderr), (b"to-out\n", b"to-err\n"))
        env = self.ok("vm", "exec", "-e", "GREETING=hello world", "-w", "/tmp", "box", "sh", "-c",
                      'echo "$GREETING"; pwd')
        self.assertEqual(env, "hello world\n/tmp\n")
        self.assertEqual(self.ok("vm", "exec", "-u", "1000:1000", "box", "id", "-u").strip(), "1000")

    def test_stdin_round_trips_1mib(self):
        data = os.urandom(1 << 20)
        result = self.kiln("vm", "exec", "-i", "box", "cat", input=data)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(hashlib.sha256(result.stdout).hexdigest(), hashlib.sha256(data).hexdigest())
        hashed = self.kiln("vm", "exec", "-i", "box", "sha256sum", input=data)
        self.assertEqual(hashed.stdout.decode().split()[0], hashlib.sha256(data).hexdigest())

    def test_tty(self):
        result = self.kiln("vm", "exec", "-t", "box", "sh", "-c", "tty; test -t 0 && echo STDIN-IS-A-TTY")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout.decode(), r"/dev/pts/\d+\r?\n")
        self.assertIn("STDIN-IS-A-TTY", result.stdout.decode())

        # -it with a real terminal: an interactive shell.
        master, slave = pty.openpty()
        proc = subprocess.Popen([KILN, "-H", self.host, "vm", "exec", "-it", "box", "sh"],
                                stdin=slave, stdout=slave, stderr=slave, env=self.env, start_new_session=True)
        os.close(slave)
        terminal = PtyReader(master)
        deadline = time.monotonic() + 60
        os.write(master, b"echo $((6*7))-interactive\n")
        terminal.read_until(b"42-interactive", deadline)
        os.write(master, b"exit 5\n")
        self.assertEqual(proc.wait(timeout=60), 5)
        os.close(master)

    def test_ctrl_c_is_forwarded(self):
        proc = subprocess.Popen([KILN, "-H", self.host, "vm", "exec", "box", "sh", "-c", "echo ready; exec sleep 600"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        self.assertEqual(proc.stdout.readline(), b"ready\n")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130, err)

    def test_double_dash_ends_the_options(self):
        self.assertEqual(self.ok("vm", "exec", "box", "--", "uname", "-s"), "Linux\n")
        self.assertEqual(self.ok("vm", "exec", "-w", "/tmp", "box", "--", "sh", "-c", "pwd"), "/tmp\n")
        # Without --, the command's words (options included) are still the command's, -t and -- too.
        self.assertEqual(self.ok("vm", "exec", "box", "echo", "-t", "--", "x"), "-t -- x\n")

    def test_closed_output_pipe_ends_the_exec(self):
        # `kiln vm exec box yes | head -1`: once the reader is gone kiln ends as yes would (SIGPIPE's status)
        # and the exec'd process dies with it; the VM keeps running.
        proc = subprocess.Popen([KILN, "-H", self.host, "vm", "exec", "box", "yes"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        try:
            self.assertEqual(proc.stdout.readline(), b"y\n")
            proc.stdout.close()  # what head does after its line
            self.assertIn(proc.wait(timeout=60), (128 + signal.SIGPIPE, -signal.SIGPIPE), proc.stderr.read())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        # The guest's `yes` is killed once kilnd sees its client gone; poll the guest's process list for it.
        list_yes = "for c in /proc/[0-9]*/comm; do cat $c; done 2>/dev/null | grep -cx yes || true"
        deadline = time.monotonic() + 60
        while self.ok("vm", "exec", "box", "sh", "-c", list_yes).strip() != "0":
            self.assertLess(time.monotonic(), deadline, "the exec'd yes is still running in the guest")
            time.sleep(0.2)
        self.assertEqual(self.ok("vm", "exec", "box", "true"), "")

    def test_console_and_ip(self):
        tail = self.ok("vm", "console", "--tail", "2", "box")
        console = self.ok("vm", "console", "box")
        # The guest kernel boots quietly; the agent (PID 1) logs its start on the console.
        self.assertIn("kiln-agent starting", console)
        self.assertLessEqual(len(tail.splitlines()), 2)
        self.assertIn(tail, console)
        self.assertNotIn("kiln-agent starting", tail)
        # box is on kilnd's default network: an address when kilnd's guest networking is on, else a NIC-less VM.
        ip = self.kiln("vm", "ip", "box")
        if ip.returncode == 0:
            self.assertRegex(ip.stdout.decode(), r"^(\d+\.\d+\.\d+\.\d+\n)+$")
            self.assertIn(ip.stdout.decode().split()[0], self.ok("vm", "ls"))
        else:
            err = self.assertOneLineError(ip)
            self.assertIn(err, ["kiln: VM box has no IP address: it is on no network",
                                "kiln: VM box has no IP address: it runs without a NIC "
                                "(kilnd's guest networking is off)"])


class VmLifecycleTest(DaemonCase):
    def test_lifecycle(self):
        vm_id = self.create_running("life")
        self.ok("vm", "exec", "life", "sh", "-c", "echo persisted > /root/marker; sync")
        self.assertEqual(self.ok("vm", "stop", "-t", "30", "life"), "life\n")
        self.assertEqual(json.loads(self.ok("vm", "inspect", "life"))[0]["state"], "stopped")
        err = self.assertOneLineError(self.kiln("vm", "exec", "life", "true"))
        self.assertIn("stopped", err)
        self.assertEqual(self.ok("vm", "start", vm_id[:12]), vm_id[:12] + "\n")
        self.assertEqual(self.ok("vm", "exec", "life", "cat", "/root/marker"), "persisted\n")

        self.assertEqual(self.ok("vm", "pause", "life"), "life\n")
        err = self.assertOneLineError(self.kiln("vm", "exec", "life", "true"))
        self.assertIn("paused", err)
        self.assertOneLineError(self.kiln("vm", "pause", "life"))
        self.ok("vm", "resume", "life")
        self.assertEqual(self.ok("vm", "exec", "life", "echo", "back"), "back\n")

        self.ok("vm", "restart", "-t", "30", "life")
        self.assertEqual(self.ok("vm", "exec", "life", "cat", "/root/marker"), "persisted\n")

        err = self.assertOneLineError(self.kiln("vm", "rm", "life"))
        self.assertIn("running", err)
        self.assertEqual(self.names(), ["life"])
        # Several names: the missing one is reported, the others still acted on.
        self.ok("vm", "create", "spare")
        result = self.kiln("vm", "rm", "-f", "life", "ghost", "spare")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, b"life\nspare\n")
        self.assertOneLineError(result)
        self.assertEqual(self.names(), [])
        deadline = time.monotonic() + 30
        while qemu_pids_naming(self.scratch):
            self.assertLess(time.monotonic(), deadline, "rm -f left QEMU running")
            time.sleep(0.2)

if __name__ == "__main__":
    unittest.main()

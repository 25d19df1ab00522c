"""Docker containers on kilnd, each in its own VM, through real clients: Debian's docker.io CLI (20.10), the
newer docker CLI where one is installed (28) and the Docker SDK for Python. Each test class starts one kilnd
and `docker load`s a busybox image built here (more applets than image_fixtures' busybox_layer); every case
removes the containers it made and leaves kilnd serving.

The expectations are dockerd's: with KILN_DOCKER_ORACLE=unix:///path/to/dockerd.sock the same cases run
against a dockerd of its own (started e.g. with `dockerd --bridge=none --iptables=false --data-root DIR -H
unix:///path`; every container on it is removed) and the Kiln-only cases are skipped."""
import datetime
import fcntl
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../daemon"))
sys.path.insert(0, os.path.join(HERE, "../image"))
from kilnd_fixtures import Kilnd, UnixConnection  # noqa: E402
from image_fixtures import MTIME, Layer, sha256  # noqa: E402

DEBIAN_DOCKER = "/usr/bin/docker"  # docker.io 20.10
CLIENTS = [path for path in (DEBIAN_DOCKER, shutil.which("docker")) if path and os.path.exists(path)]
CLIENTS = list(dict.fromkeys(os.path.realpath(c) for c in CLIENTS))
ORACLE = os.environ.get("KILN_DOCKER_ORACLE")  # a dockerd's socket: check the expectations against it
IMAGE = "busybox:latest"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APPLETS = ("sh", "ls", "cat", "echo", "sha256sum", "true", "false", "sleep", "id", "hostname", "env", "pwd",
           "wc", "head", "tail", "seq", "kill", "uname", "ps", "mkdir", "touch", "date", "printf", "tr",
           "grep", "sed", "test", "yes", "stat", "whoami", "nproc", "ln", "rm", "mv",
           # networking (connectivity_test.py)
           "ping", "wget", "nc", "httpd", "nslookup", "ip", "ifconfig", "route", "timeout")
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")


def client_version(docker):
    out = subprocess.run([docker, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "DOCKER_HOST": "unix:///nonexistent"})
    return out.stdout.strip()


def busybox_rootfs():
    """The host's static busybox with the applets these cases use, users root, nobody and app (uid 1000, also
    in group staff) and no /proc, /sys, /dev, /etc/hostname, /etc/hosts or /etc/resolv.conf of its own."""
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    layer = (Layer().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700).dir("usr").dir("usr/bin")
             .dir("home").dir("home/app", 0o755, 1000, 1000).dir("var"))
    layer.file("bin/busybox", busybox, 0o755)
    for applet in APPLETS:
        layer.symlink(f"bin/{applet}", "busybox")
    layer.symlink("usr/bin/env", "/bin/busybox")
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                             b"app:x:1000:1000:app:/home/app:/bin/sh\n")
    layer.file("etc/group", b"root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n")
    return layer.bytes()


def write_image_archive(path, repo_tag=IMAGE):
    """A `docker save` archive of busybox_rootfs() with Cmd ["sh"] and the PATH Docker images carry."""
    layer = busybox_rootfs()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [{"created_by": "kiln container test fixture"}],
    }, sort_keys=True).encode()
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))
        add(sha256(config)[7:] + ".json", config)
        add("layer/layer.tar", layer)
        add("manifest.json", json.dumps([{"Config": sha256(config)[7:] + ".json", "RepoTags": [repo_tag],
                                          "Layers": ["layer/layer.tar"]}]).encode())


def wait_until(predicate, what, timeout=60, interval=0.1):
    """Polls predicate() until it returns something true (returned); AssertionError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ContainerCase(unittest.TestCase):
    """One kilnd (or the oracle dockerd) per class, with the busybox image loaded."""

    kiln_only = False
    kilnd_boot = None  # kilnd's --boot for this class (None: KILN_TEST_BOOT, else kilnd's default)

    @classmethod
    def setUpClass(cls):
        if not CLIENTS:
            raise unittest.SkipTest("no docker CLI installed (scripts/install-deps.sh installs Debian's docker.io)")
        if ORACLE and cls.kiln_only:
            raise unittest.SkipTest("Kiln-only cases (KILN_DOCKER_ORACLE is set)")
        cls.work = tempfile.mkdtemp(prefix="kiln-container-test-")
        cls.addClassCleanup(shutil.rmtree, cls.work, ignore_errors=True)
        cls.config_dir = os.path.join(cls.work, "docker-config")  # not the user's ~/.docker
        os.makedirs(cls.config_dir)
        if ORACLE:
            cls.kilnd = None
            cls.docker_socket = ORACLE[len("unix://"):]
        else:
            cls.kilnd = Kilnd(boot=cls.kilnd_boot)
            cls.addClassCleanup(cls.kilnd.cleanup)
            cls.kilnd.start()
            cls.docker_socket = os.path.join(cls.kilnd.run_dir, "docker.sock")
        archive = os.path.join(cls.work, "busybox.tar")
        write_image_archive(archive)
        loaded = cls.run_docker("load", "-i", archive)
        if loaded.returncode != 0:
            raise RuntimeError(f"docker load failed: {loaded.stderr.decode()}\n{cls.server_log()}")

    @classmethod
    def run_docker(cls, *args, client=None, input=None, timeout=120):
        return subprocess.run([client or CLIENTS[0], *args], capture_output=True, env=cls.docker_env(),
                              input=input, timeout=timeout)

    @classmethod
    def docker_env(cls):
        return {"PATH": os.environ["PATH"], "HOME": cls.work, "DOCKER_CONFIG": cls.config_dir,
                "DOCKER_HOST": "unix://" + cls.docker_socket}

    @classmethod
    def server_log(cls):
        return cls.kilnd.log() if cls.kilnd else "(oracle dockerd: see its own log)"

    def tearDown(self):
        # Every container this case made goes, and the daemon still answers both of its APIs.
        ids = self.run_docker("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            removed = self.run_docker("rm", "-f", *ids)
            self.assertEqual(removed.returncode, 0, removed.stderr.decode() + self.server_log())
        connection = UnixConnection(self.docker_socket, timeout=30)
        connection.request("GET", "/_ping")
        response = connection.getresponse()
        self.assertEqual((response.status, response.read()), (200, b"OK"), self.server_log())
        connection.close()
        if self.kilnd:
            self.assertEqual(self.kilnd.request("GET", "/v1/ping", timeout=30).status, 200, self.kilnd.log())

    # --- helpers ----------------------------------------------------------------------------------------
    def docker(self, *args, client=None, check=True, input=None, timeout=120):
        result = self.run_docker(*args, client=client, input=input, timeout=timeout)
        if check and result.returncode != 0:
            self.fail(f"docker {' '.join(args)} exited {result.returncode}:\nstdout: {result.stdout[-2000:]!r}\n"
                      f"stderr: {result.stderr.decode()}\n{self.server_log()}")
        return result

    def out(self, *args, **kwargs):
        return self.docker(*args, **kwargs).stdout.decode().strip()

    def popen(self, *args, client=None):
        process = subprocess.Popen([client or CLIENTS[0], *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=self.docker_env())
        def reap():
            if process.poll() is None:
                process.kill()
            process.communicate()
        self.addCleanup(reap)
        return process

    def inspect(self, container):
        return json.loads(self.out("inspect", "--type", "container", container))[0]

    def state(self, container):
        return self.inspect(container)["State"]

    def wait_for_log(self, container, text, timeout=60):
        return wait_until(lambda: text in self.docker("logs", container, check=False).stdout.decode(),
                          f"{text!r} in the logs of {container}", timeout)

    def wait_running(self, container, timeout=60):
        """Waits until `container` exists (an attached `docker run` may not have created it yet) and runs."""
        def running():
            found = self.docker("inspect", "--type", "container", "--format", "{{.State.Running}}", container,
                                check=False)
            return found.returncode == 0 and found.stdout.strip() == b"true"
        wait_until(running, f"{container} running", timeout)

    def raw(self, method, path, body=None, content_type="application/json"):
        """One request on the Docker socket; (status, decoded JSON body or raw bytes)."""
        connection = UnixConnection(self.docker_socket, timeout=60)
        headers = {"Content-Type": content_type} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data

    def start_looping(self, name, *extra, script="echo ready; while true; do sleep 0.1; done"):
        """A detached container whose sh loops until signalled; returns its id once it has said `ready`."""
        container = self.out("run", "-d", "--name", name, *extra, IMAGE, "sh", "-c", script)
        self.wait_for_log(name, "ready")
        return container


class RunTest(ContainerCase):
    def test_exit_codes_with_every_client(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                ok = self.docker("run", "--rm", IMAGE, "true", client=client)
                self.assertEqual((ok.returncode, ok.stdout, ok.stderr), (0, b"", b""))
                three = self.docker("run", "--rm", IMAGE, "sh", "-c", "exit 3", client=client, check=False)
                self.assertEqual((three.returncode, three.stderr), (3, b""))
                # A main process killed by a signal: 128 + the signal, for the attached run as for `wait`.
                name = "killed-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", client_version(client))
                run = self.popen("run", "--name", name, IMAGE, "sleep", "60", client=client)
                self.wait_running(name)
                self.docker("kill", name, client=client)
                run.communicate(timeout=60)
                self.assertEqual(run.returncode, 137)
                self.assertEqual(self.out("wait", name, client=client), "137")
                self.assertEqual(self.state(name)["ExitCode"], 137)

    def test_stdout_and_stderr_stay_apart(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                result = self.docker("run", "--rm", IMAGE, "sh", "-c",
                                     "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 0", client=client)
                self.assertEqual(result.stdout, b"out1\nout2\n")
                self.assertEqual(result.stderr, b"err1\nerr2\n")

    def test_big_stdout_arrives_whole(self):
        expected = "".join(f"{i}\n" for i in range(1, 700001)).encode()  # 4.8 MB
        result = self.docker("run", "--rm", IMAGE, "seq", "1", "700000")
        self.assertEqual(len(result.stdout), len(expected))
        self.assertTrue(result.stdout == expected, "stdout differs from seq's output")
        binary = self.docker("run", "--rm", IMAGE, "sh", "-c", "head -c 5242880 /dev/zero | tr '\\0' x")
        self.assertEqual(binary.stdout, b"x" * 5242880)

    def test_stdin_is_piped_in(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                echoed = self.docker("run", "-i", "--rm", IMAGE, "cat", client=client, input=b"hello\nworld\n",
                                     timeout=60)
                self.assertEqual(echoed.stdout, b"hello\nworld\n")
        counted = self.docker("run", "-i", "--rm", IMAGE, "wc", "-c", input=b"x" * (1 << 20), timeout=30)
        self.assertEqual(counted.stdout.decode().strip(), str(1 << 20))
        # Every byte value, Ctrl-P Ctrl-Q included: detach keys apply only with a tty.
        for client in CLIENTS:
            with self.subTest(client=client_version(client), input="every byte"):
                data = bytes(range(256)) * 4096
                digest = self.docker("run", "-i", "--rm", IMAGE, "sha256sum", input=data, client=client, timeout=30)
                self.assertEqual(digest.stdout.decode().split()[0], sha256(data)[7:])
        # Without -i the container's stdin is empty, whatever the client's is.
        closed = self.docker("run", "--rm", IMAGE, "wc", "-c", input=b"ignored")
        self.assertEqual(closed.stdout.decode().strip(), "0")

    def test_env_workdir_hostname_name_and_label(self):
        script = ('echo "FOO=$FOO"; echo "EMPTY=[$EMPTY]"; pwd; hostname; echo "HOSTNAME=$HOSTNAME"; '
                  'echo "HOME=$HOME"; echo "PATH=$PATH"')
        result = self.out("run", "--name", "named", "--hostname", "myhost", "--label", "team=blue", "-e", "FOO=bar",
                          "-e", "EMPTY=", "-w", "/tmp", IMAGE, "sh", "-c", script)
        self.assertEqual(result.splitlines(), ["FOO=bar", "EMPTY=[]", "/tmp", "myhost", "HOSTNAME=myhost",
                                               "HOME=/root", PATH_ENV])
        container = self.inspect("named")
        self.assertEqual(container["Name"], "/named")
        self.assertEqual(container["Config"]["Hostname"], "myhost")
        self.assertEqual(container["Config"]["Labels"], {"team": "blue"})
        self.assertEqual(container["Config"]["WorkingDir"], "/tmp")
        self.assertIn("FOO=bar", container["Config"]["Env"])
        self.assertEqual(self.out("ps", "-a", "--filter", "label=team=blue", "--format", "{{.Names}}"), "named")
        # Without --hostname the host name is the short id, in the environment too.
        short = self.out("run", "-d", IMAGE, "sh", "-c", 'hostname; echo "$HOSTNAME"')[:12]
        self.out("wait", short)
        self.assertEqual(self.out("logs", short).splitlines(), [short, short])

    def test_workdir_is_created_when_missing(self):
        self.assertEqual(self.out("run", "--rm", "-w", "/does/not/exist", IMAGE, "sh", "-c",
                                  'pwd; stat -c "%a %U" .'), "/does/not/exist\n755 root")

    def test_users_by_name_and_number(self):
        self.assertEqual(self.out("run", "--rm", "-u", "nobody", IMAGE, "id"),
                         "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)")
        # A user from the image's /etc/passwd, with its supplementary group from /etc/group, and its home.
        self.assertEqual(self.out("run", "--rm", "-u", "app", IMAGE, "sh", "-c", 'id; echo "$HOME"'),
                         "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n/home/app")
        self.assertEqual(self.out("run", "--rm", "-u", "1000:50", IMAGE, "id"),
                         "uid=1000(app) gid=50(staff) groups=50(staff)")
        self.assertEqual(self.out("run", "--rm", "-u", "4242", IMAGE, "sh", "-c", 'id; echo "$HOME"'),
                         "uid=4242 gid=0(root) groups=0(root)\n/")
        unknown = self.docker("run", "--rm", "-u", "nosuchuser", IMAGE, "id", check=False)
        self.assertEqual(unknown.returncode, 125)
        self.assertIn("unable to find user nosuchuser", unknown.stderr.decode())
        self.assertIn("no matching entries in passwd file", unknown.stderr.decode())

    def test_entrypoint_replaces_the_images(self):
        self.assertEqual(self.out("run", "--rm", "--entrypoint", "echo", IMAGE, "from", "entrypoint"),
                         "from entrypoint")
        self.assertEqual(self.out("run", "--rm", "--entrypoint", "/bin/sh", IMAGE, "-c", "echo $0"), "/bin/sh")
        self.out("create", "--name", "ep", "--entrypoint", "echo", IMAGE, "x")
        config = self.inspect("ep")
        self.assertEqual((config["Path"], config["Args"]), ("echo", ["x"]))
        self.assertEqual(config["Config"]["Entrypoint"], ["echo"])

    def test_missing_and_non_executable_commands(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                missing = self.docker("run", "--rm", IMAGE, "nosuch", client=client, check=False)
                self.assertEqual(missing.returncode, 127)
                self.assertIn('exec: "nosuch": executable file not found in $PATH', missing.stderr.decode())
                absent = self.docker("run", "--rm", IMAGE, "/no/such/file", client=client, check=False)
                self.assertEqual(absent.returncode, 127)
                self.assertIn("no such file or directory", absent.stderr.decode())
                denied = self.docker("run", "--rm", IMAGE, "/etc/passwd", client=client, check=False)
                self.assertEqual(denied.returncode, 126)
                self.assertIn("permission denied", denied.stderr.decode())
        # The container that failed to start stays, Created-never-ran, with the exit code the CLI reports.
        self.docker("run", "--name", "failed", IMAGE, "nosuch", check=False)
        state = self.state("failed")
        self.assertEqual((state["Status"], state["ExitCode"]), ("created", 127))
        self.assertIn("executable file not found", state["Error"])

    def test_rm_leaves_nothing_behind(self):
        self.docker("run", "--rm", "--name", "gone", IMAGE, "true")
        self.assertEqual(self.out("ps", "-aq", "--filter", "name=gone"), "")
        self.docker("run", "--rm", "--name", "gone", IMAGE, "sh", "-c", "exit 2", check=False)  # name free again
        self.assertEqual(self.out("ps", "-aq"), "")
        if self.kilnd:
            self.assertEqual(self.kilnd.ok("GET", "/v1/vms"), [])  # the VMs went with the containers
        # rm of a stopped container, and rm -f of a running one, take their VMs too.
        self.docker("run", "--name", "stopped", IMAGE, "true")
        self.out("run", "-d", "--name", "running", IMAGE, "sleep", "100")
        self.assertEqual(self.out("rm", "stopped"), "stopped")
        self.assertEqual(self.out("rm", "-f", "running"), "running")
        self.assertEqual(self.out("ps", "-aq"), "")
        if self.kilnd:
            self.assertEqual(self.kilnd.ok("GET", "/v1/vms"), [])

    def test_kernel_is_the_guests(self):
        if not self.kilnd:
            self.skipTest("a Kiln guest kernel, not the host's")
        kernel = self.out("run", "--rm", IMAGE, "uname", "-r")
        self.assertNotEqual(kernel, os.uname().release)
        self.assertEqual(kernel, self.out("version", "--format", "{{.Server.KernelVersion}}"))

    def test_five_concurrent_runs(self):
        runs = [self.popen("run", "--rm", "--name", f"par{i}", IMAGE, "sh", "-c", f"echo run{i}; hostname")
                for i in range(5)]
        hostnames = set()
        for i, run in enumerate(runs):
            stdout, stderr = run.communicate(timeout=180)
            self.assertEqual(run.returncode, 0, stderr.decode() + self.server_log())
            lines = stdout.decode().split()
            self.assertEqual(lines[0], f"run{i}")
            hostnames.add(lines[1])
        self.assertEqual(len(hostnames), 5)
        self.assertEqual(self.out("ps", "-aq"), "")

    def test_etc_hostname(self):
        self.assertEqual(self.out("run", "--rm", "--hostname", "box", IMAGE, "cat", "/etc/hostname"), "box")

    def test_etc_hosts(self):
        hosts = self.out("run", "--rm", "--hostname", "box", IMAGE, "cat", "/etc/hosts")
        self.assertRegex(hosts, r"(?m)^127\.0\.0\.1\s+localhost")

    def test_etc_resolv_conf(self):
        self.assertEqual(self.docker("run", "--rm", IMAGE, "test", "-f", "/etc/resolv.conf", check=False).returncode, 0)


class LifecycleTest(ContainerCase):
    def test_detached_run_and_its_logs(self):
        container = self.out("run", "-d", "--name", "talker", IMAGE, "sh", "-c",
                             "echo ready; for i in 1 2 3 4 5; do sleep 0.4; echo line$i; done; echo bye >&2")
        self.assertRegex(container, r"^[0-9a-f]{64}$")
        self.wait_for_log("talker", "ready")
        follow = self.popen("logs", "-f", "talker")
        stdout, stderr = follow.communicate(timeout=60)  # ends by itself once the container has exited
        self.assertEqual(follow.returncode, 0)
        self.assertEqual(stdout.decode(), "ready\n" + "".join(f"line{i}\n" for i in range(1, 6)))
        self.assertEqual(stderr, b"bye\n")
        self.assertEqual(self.out("wait", "talker"), "0")
        tail = self.docker("logs", "--tail", "2", "talker")
        self.assertEqual((tail.stdout, tail.stderr), (b"line5\n", b"bye\n"))
        self.assertEqual(self.docker("logs", "--tail", "0", "talker").stdout, b"")
        stamped = self.docker("logs", "--timestamps", "talker").stdout.decode().splitlines()
        self.assertEqual(len(stamped), 6)
        times = []
        for line in stamped:
            match = TIMESTAMPED.match(line)
            self.assertTrue(match, line)
            times.append(line[:26])
        self.assertEqual([TIMESTAMPED.match(line).group(1) for line in stamped],
                         ["ready"] + [f"line{i}" for i in range(1, 6)])
        self.assertEqual(times, sorted(times))
        # logs -f of an exited container prints what there is and returns.
        self.assertIn(b"line5", self.docker("logs", "-f", "talker", timeout=30).stdout)

    def test_stop_with_a_handled_term_and_start_again(self):
        self.start_looping("trapper", script='trap "echo got TERM; exit 42" TERM; echo ready; '
                                             "while true; do sleep 0.1; done")
        started = time.monotonic()
        self.assertEqual(self.out("stop", "trapper"), "trapper")
        self.assertLess(time.monotonic() - started, 5, "stop waited for the timeout instead of the trap")
        state = self.state("trapper")
        self.assertEqual((state["Status"], state["ExitCode"], state["Running"]), ("exited", 42, False))
        self.assertEqual(self.out("logs", "trapper"), "ready\ngot TERM")
        # Stop of a stopped container is a 304 (the CLI says nothing is wrong).
        status, _ = self.raw("POST", "/containers/trapper/stop")
        self.assertEqual(status, 304)
        # Started again: same container, same writable layer, the logs keep the first run's lines.
        self.assertEqual(self.out("start", "trapper"), "trapper")
        wait_until(lambda: self.out("logs", "trapper").count("ready") == 2, "the second run's ready")
        status, _ = self.raw("POST", "/containers/trapper/start")
        self.assertEqual(status, 304)  # already running
        self.docker("stop", "trapper")
        self.assertEqual(self.out("logs", "trapper"), "ready\ngot TERM\nready\ngot TERM")

    def test_stop_of_a_process_ignoring_term_kills_it_after_the_timeout(self):
        self.start_looping("stubborn", script='trap "" TERM; echo ready; while true; do sleep 0.1; done')
        started = time.monotonic()
        self.docker("stop", "-t", "1", "stubborn")
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 1)
        self.assertLess(elapsed, 8)
        self.assertEqual(self.state("stubborn")["ExitCode"], 137)

    def test_start_again_keeps_the_logs_and_the_writable_layer(self):
        self.docker("run", "--name", "twice", IMAGE, "sh", "-c", "echo run >> /counter; cat /counter | wc -l")
        self.docker("start", "-a", "twice")
        self.assertEqual(self.out("logs", "twice").splitlines(), ["1", "2"])
        self.docker("start", "twice")
        self.assertEqual(self.out("wait", "twice"), "0")
        self.assertEqual(self.out("logs", "twice").splitlines(), ["1", "2", "3"])

    def test_kill_with_a_signal_and_wait(self):
        self.start_looping("signalled", script='trap "echo got USR1; exit 5" USR1; echo ready; '
                                               "while true; do sleep 0.1; done")
        waiter = self.popen("wait", "signalled")
        self.assertEqual(self.out("kill", "-s", "USR1", "signalled"), "signalled")
        stdout, _ = waiter.communicate(timeout=60)
        self.assertEqual(stdout.decode().strip(), "5")
        self.assertIn("got USR1", self.out("logs", "signalled"))
        self.start_looping("named-signal", script='trap "exit 6" HUP; echo ready; while true; do sleep 0.1; done')
        self.docker("kill", "--signal", "SIGHUP", "named-signal")
        self.assertEqual(self.out("wait", "named-signal"), "6")
        # Kill of a stopped container is an error, as with dockerd.
        stopped = self.docker("kill", "named-signal", check=False)
        self.assertEqual(stopped.returncode, 1)
        self.assertIn("is not running", stopped.stderr.decode())

    def test_wait_returns_the_exit_code(self):
        self.out("run", "-d", "--name", "later", IMAGE, "sh", "-c", "sleep 1; exit 7")
        self.assertEqual(self.out("wait", "later"), "7")
        self.assertEqual(self.out("wait", "later"), "7")  # an exited container: at once
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                self.assertEqual(self.out("wait", "later", client=client), "7")

    def test_rename(self):
        container = self.out("create", "--name", "old", IMAGE, "true")
        self.docker("rename", "old", "new")
        self.assertEqual(self.inspect("new")["Name"], "/new")
        self.assertEqual(self.inspect(container)["Name"], "/new")
        missing = self.docker("inspect", "--type", "container", "old", check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("No such container: old", missing.stderr.decode())
        self.out("create", "--name", "other", IMAGE, "true")
        taken = self.docker("rename", "new", "other", check=False)
        self.assertEqual(taken.returncode, 1)
        self.assertIn('Conflict. The container name "/other" is already in use', taken.stderr.decode())
        # A running container can be renamed too, and runs on under its new name.
        self.start_looping("moving")
        self.docker("rename", "moving", "moved")
        self.assertEqual(self.out("ps", "--filter", "name=moved", "--format", "{{.Names}} {{.State}}"),
                         "moved running")
        if self.kilnd:
            vm = self.vm_of(self.inspect("moved")["Id"])
            self.assertEqual(vm["labels"].get("kiln.container.name"), "moved")

    def vm_of(self, container_id):
        vms = [vm for vm in self.kilnd.ok("GET", "/v1/vms") if vm["labels"].get("kiln.container.id") == container_id]
        self.assertEqual(len(vms), 1, vms)
        return vms[0]

    def test_pause_and_unpause(self):
        self.start_looping("counter", script="echo ready; i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done")
        self.docker("pause", "counter")
        state = self.state("counter")
        self.assertEqual((state["Status"], state["Paused"], state["Running"]), ("paused", True, True))
        self.assertEqual(self.out("ps", "--filter", "status=paused", "--format", "{{.Names}}"), "counter")
        self.assertIn("(Paused)", self.out("ps", "--format", "{{.Status}}"))
        before = len(self.out("logs", "counter").splitlines())
        time.sleep(1)  # a paused VM prints nothing, however long it is left
        self.assertEqual(len(self.out("logs", "counter").splitlines()), before)
        exec_paused = self.docker("exec", "counter", "true", check=False)
        self.assertEqual(exec_paused.returncode, 1)
        self.assertIn("is paused, unpause the container before exec", exec_paused.stderr.decode())
        self.docker("unpause", "counter")
        wait_until(lambda: len(self.out("logs", "counter").splitlines()) > before + 3, "output after unpause")
        state = self.state("counter")
        self.assertEqual((state["Status"], state["Paused"]), ("running", False))
        not_paused = self.docker("unpause", "counter", check=False)
        self.assertEqual(not_paused.returncode, 1)
        self.assertIn("is not paused", not_paused.stderr.decode())

    def test_restart_on_failure_gives_up_after_the_count(self):
        self.out("run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo attempt; exit 1")
        wait_until(lambda: self.out("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "flaky")
                   == "exited 2", "flaky exited after 2 restarts", timeout=90)
        self.assertEqual(self.out("logs", "flaky").splitlines(), ["attempt"] * 3)
        container = self.inspect("flaky")
        self.assertEqual(container["State"]["ExitCode"], 1)
        self.assertEqual(container["HostConfig"]["RestartPolicy"], {"Name": "on-failure", "MaximumRetryCount": 2})
        # A clean exit is not a failure: no restart.
        self.out("run", "-d", "--name", "clean", "--restart", "on-failure:2", IMAGE, "true")
        self.assertEqual(self.out("wait", "clean"), "0")
        time.sleep(1)  # a restart would have begun within dockerd's first 100 ms back-off
        self.assertEqual(self.out("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "clean"), "exited 0")

    def test_restart_always_until_stopped(self):
        self.out("run", "-d", "--name", "phoenix", "--restart", "always", IMAGE, "sh", "-c", "echo attempt; exit 0")
        wait_until(lambda: int(self.out("inspect", "--format", "{{.RestartCount}}", "phoenix")) >= 2,
                   "phoenix restarted twice", timeout=90)
        self.assertGreaterEqual(self.out("logs", "phoenix").count("attempt"), 2)
        self.assertEqual(self.inspect("phoenix")["HostConfig"]["RestartPolicy"]["Name"], "always")
        self.docker("stop", "phoenix")
        count = self.out("inspect", "--format", "{{.RestartCount}}", "phoenix")
        time.sleep(2)  # stopped by the user: never restarted again
        self.assertEqual(self.out("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "phoenix"),
                         f"exited {count}")


class ExecTest(ContainerCase):
    def test_exec_in_every_form(self):
        container = self.start_looping("target", "-e", "FROM_RUN=1")
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                plain = self.docker("exec", "target", "sh", "-c", "echo out; echo err >&2", client=client)
                self.assertEqual((plain.stdout, plain.stderr), (b"out\n", b"err\n"))
                # Several times: the CLI reads the exit code from the exec's record once the stream ends, so the
                # record must be final by then.
                codes = [self.docker("exec", "target", "sh", "-c", "exit 4", client=client, check=False).returncode
                         for _ in range(5)]
                self.assertEqual(codes, [4] * 5)
        self.assertEqual(self.out("exec", "-e", "FOO=bar", "target", "sh", "-c", 'echo "$FOO $FROM_RUN"'), "bar 1")
        env = self.out("exec", "target", "env").splitlines()
        self.assertIn(PATH_ENV, env)
        self.assertIn("HOSTNAME=" + container[:12], env)
        self.assertEqual(self.out("exec", "target", "hostname"), container[:12])  # the container's UTS namespace
        self.assertEqual(self.out("exec", "-w", "/tmp", "target", "pwd"), "/tmp")
        self.assertEqual(self.out("exec", "-u", "nobody", "target", "id"),
                         "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)")
        self.assertEqual(self.out("exec", "-u", "app", "target", "id", "-un"), "app")
        self.assertEqual(self.docker("exec", "-i", "target", "cat", input=b"through exec\n").stdout, b"through exec\n")
        self.assertEqual(self.out("exec", "target", "sh", "-c", "echo hello > /tmp/shared; cat /tmp/shared"), "hello")
        # Detached: returns at once; its effect shows up in the container's filesystem.
        self.assertEqual(self.out("exec", "-d", "target", "sh", "-c", "sleep 0.5; echo done > /tmp/marker"), "")
        wait_until(lambda: self.docker("exec", "target", "cat", "/tmp/marker", check=False).stdout == b"done\n",
                   "the detached exec's marker")
        missing = self.docker("exec", "target", "nosuch", check=False)
        self.assertIn(missing.returncode, (126, 127))  # dockerd 20.10 says 126, later ones 127
        self.assertIn("executable file not found", missing.stdout.decode() + missing.stderr.decode())
        # The exec's record: ExitCode, Running.
        status, created = self.raw("POST", "/containers/target/exec",
                                   json.dumps({"Cmd": ["sh", "-c", "exit 9"], "AttachStdout": True}))
        self.assertEqual(status, 201)
        status, _ = self.raw("POST", f"/exec/{created['Id']}/start", json.dumps({"Detach": True}))
        self.assertEqual(status, 200)
        exec_state = wait_until(lambda: (lambda s: s if not s["Running"] else None)(
            self.raw("GET", f"/exec/{created['Id']}/json")[1]), "the exec's end")
        self.assertEqual((exec_state["ExitCode"], exec_state["ContainerID"]), (9, container))
        # Exec into a container that is not running.
        self.docker("stop", "-t", "1", "target")
        stopped = self.docker("exec", "target", "true", check=False)
        self.assertEqual(stopped.returncode, 1)
        self.assertIn("is not running", stopped.stderr.decode())

    def test_exec_sees_the_main_process_as_pid_1(self):
        self.out("run", "-d", "--name", "pid1", IMAGE, "sleep", "1000")
        self.wait_running("pid1")
        processes = self.out("exec", "pid1", "ps", "-o", "pid,args")
        self.assertRegex(processes, r"(?m)^\s*1\s+sleep 1000$")


class ListAndInspectTest(ContainerCase):
    def test_ps_filters_and_format(self):
        image_id = self.out("image", "inspect", "--format", "{{.Id}}", IMAGE)
        three = self.out("run", "-d", "--name", "f-three", "--label", "team=a", IMAGE, "sh", "-c", "exit 3")
        self.out("wait", three)
        zero = self.out("run", "-d", "--name", "f-zero", "--label", "team=b", IMAGE, "true")
        self.out("wait", zero)
        running = self.out("run", "-d", "--name", "f-running", "--label", "team=b", "--label", "tier=web", IMAGE,
                           "sleep", "100")
        created = self.out("create", "--name", "f-created", IMAGE, "true")

        def names(*filters, client=None):
            args = ["ps", "-a", "--format", "{{.Names}}"]
            for f in filters:
                args += ["--filter", f]
            return sorted(self.out(*args, client=client).split())

        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                self.assertEqual(names("status=exited", client=client), ["f-three", "f-zero"])
                self.assertEqual(names("status=running", client=client), ["f-running"])
                self.assertEqual(names("status=created", client=client), ["f-created"])
                self.assertEqual(names("label=team=b", client=client), ["f-running", "f-zero"])
                self.assertEqual(names("exited=3", client=client), ["f-three"])
                self.assertEqual(names("ancestor=busybox", client=client),
                                 ["f-created", "f-running", "f-three", "f-zero"])
        self.assertEqual(names("status=exited", "status=created"), ["f-created", "f-three", "f-zero"])
        self.assertEqual(names("name=^f-t"), ["f-three"])  # a regular expression
        self.assertEqual(names("name=zer"), ["f-zero"])
        self.assertEqual(names("label=team"), ["f-running", "f-three", "f-zero"])
        self.assertEqual(names("label=team=b", "label=tier"), ["f-running"])
        self.assertEqual(names("exited=0"), ["f-zero"])
        self.assertEqual(names("id=" + three[:10]), ["f-three"])
        self.assertEqual(names("ancestor=busybox:latest"), ["f-created", "f-running", "f-three", "f-zero"])
        self.assertEqual(names("ancestor=" + image_id), ["f-created", "f-running", "f-three", "f-zero"])
        self.assertEqual(names("ancestor=nosuch"), [])
        bad = self.docker("ps", "--filter", "colour=red", check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("invalid filter 'colour'", bad.stderr.decode().lower())  # capitalised before API 1.42
        # Without -a only running containers; -q short ids; --no-trunc whole ones; -n the latest.
        self.assertEqual(self.out("ps", "--format", "{{.Names}}"), "f-running")
        self.assertEqual(self.out("ps", "-q"), running[:12])
        self.assertEqual(sorted(self.out("ps", "-aq", "--no-trunc").split()), sorted([three, zero, running, created]))
        self.assertEqual(self.out("ps", "-a", "-n", "1", "--format", "{{.Names}}"), "f-created")
        self.assertEqual(self.out("ps", "-l", "--format", "{{.ID}}"), created[:12])
        line = self.out("ps", "-a", "--no-trunc", "--filter", "name=f-three", "--format",
                        "{{.ID}}|{{.Image}}|{{.Command}}|{{.Status}}|{{.State}}|{{.Names}}|{{.Labels}}")
        fields = line.split("|")
        self.assertEqual(fields[0], three)
        self.assertEqual(fields[1:3], [IMAGE, "\"sh -c 'exit 3'\""])
        self.assertRegex(fields[3], r"^Exited \(3\) ")
        self.assertEqual(fields[4:], ["exited", "f-three", "team=a"])
        self.assertRegex(self.out("ps", "--format", "{{.Status}}"), r"^Up ")
        listed = json.loads(self.out("ps", "-a", "--filter", "name=f-running", "--format", "{{json .}}"))
        self.assertEqual((listed["Names"], listed["State"]), ("f-running", "running"))

    def test_inspect_fields(self):
        container = self.out("run", "-d", "--name", "looked-at", "--restart", "on-failure:3", "-e", "A=1", IMAGE,
                             "sleep", "100")
        self.wait_running("looked-at")
        info = self.inspect("looked-at")
        self.assertEqual(info["Id"], container)
        self.assertEqual(info["Name"], "/looked-at")
        self.assertEqual(info["Image"], self.out("image", "inspect", "--format", "{{.Id}}", IMAGE))
        self.assertEqual((info["Path"], info["Args"]), ("sleep", ["100"]))
        self.assertEqual(info["RestartCount"], 0)
        state = info["State"]
        self.assertEqual((state["Status"], state["Running"], state["Paused"], state["ExitCode"]),
                         ("running", True, False, 0))
        self.assertGreater(state["Pid"], 0)
        self.assertTrue(state["StartedAt"].startswith(str(datetime.date.today().year)), state["StartedAt"])
        self.assertEqual(state["FinishedAt"], "0001-01-01T00:00:00Z")
        config = info["Config"]
        self.assertEqual(config["Image"], IMAGE)
        self.assertEqual(config["Cmd"], ["sleep", "100"])
        self.assertEqual(config["Hostname"], container[:12])
        # dockerd's order (the run's variables, then the image's); HOSTNAME is added to the process, not here.
        self.assertEqual(config["Env"], ["A=1", PATH_ENV])
        self.assertEqual(info["HostConfig"]["RestartPolicy"], {"Name": "on-failure", "MaximumRetryCount": 3})
        self.assertFalse(info["HostConfig"]["AutoRemove"])
        # The container's main process sees HOSTNAME all the same.
        self.assertIn("HOSTNAME=" + container[:12], self.out("exec", "looked-at", "cat", "/proc/1/environ")
                      .split("\0"))
        if self.kilnd:
            # State.Pid is the VM monitor's.
            with open(f"/proc/{state['Pid']}/cmdline", "rb") as f:
                self.assertIn(b"qemu-system", f.read())
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                self.assertEqual(self.out("inspect", "--format", "{{.State.Status}} {{.Name}} {{.Config.Image}}",
                                          "looked-at", client=client), "running /looked-at " + IMAGE)
                self.assertEqual(self.out("container", "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}",
                                          container[:8], client=client), "on-failure")
        self.docker("kill", "looked-at")
        self.assertEqual(self.out("wait", "looked-at"), "137")
        state = self.state("looked-at")
        self.assertEqual((state["Status"], state["Running"], state["ExitCode"], state["Pid"]),
                         ("exited", False, 137, 0))
        self.assertNotEqual(state["FinishedAt"], "0001-01-01T00:00:00Z")
        self.assertGreaterEqual(state["FinishedAt"], state["StartedAt"])


class KilnApiTest(ContainerCase):
    kiln_only = True

    def test_container_vm_is_listed_and_cannot_be_deleted(self):
        container = self.start_looping("as-vm")
        vms = [vm for vm in self.kilnd.ok("GET", "/v1/vms") if vm["labels"].get("kiln.container.id") == container]
        self.assertEqual(len(vms), 1, self.kilnd.ok("GET", "/v1/vms"))
        vm = vms[0]
        self.assertEqual(vm["labels"].get("kiln.container.name"), "as-vm")
        self.assertEqual(vm["state"], "running")
        self.assertEqual(vm["monitor_pid"], self.state("as-vm")["Pid"])
        # Forked from a template unless this kilnd boots cold (KILN_TEST_BOOT=cold: the docker_cold suite).
        self.assertEqual(vm["start"]["mode"], "boot" if self.kilnd.boot == "cold" else "fork", vm)
        for target in (vm["id"], vm["name"]):
            refused = self.kilnd.request("DELETE", f"/v1/vms/{target}")
            self.assertEqual(refused.status, 409, refused)
            message = json.dumps(refused.json())
            self.assertIn("as-vm", message)
            self.assertIn(container[:12], message)
        reconfigured = self.kilnd.request("PATCH", f"/v1/vms/{vm['id']}", {"memory_mib": 1024})
        self.assertEqual(reconfigured.status, 409, reconfigured)
        # Refused means untouched: the container runs on.
        self.assertEqual(self.state("as-vm")["Status"], "running")
        self.assertEqual(self.out("exec", "as-vm", "echo", "alive"), "alive")
        # Killed through the Kiln API: Docker sees the container exit.
        killed = self.kilnd.request("POST", f"/v1/vms/{vm['id']}/kill")
        self.assertLess(killed.status, 300, killed)
        wait_until(lambda: self.state("as-vm")["Status"] == "exited", "the container to exit with its VM")
        self.docker("rm", "as-vm")
        self.assertEqual([v for v in self.kilnd.ok("GET", "/v1/vms") if v["id"] == vm["id"]], [])


class TtyTest(ContainerCase):
    """`docker run -it` and `docker exec -it` through a real pty: typing, reading, the window size, detach keys."""

    def spawn(self, *args):
        """The docker CLI on a pty of its own (as in a terminal); returns (pid, master fd)."""
        pid, master = pty.fork()
        if pid == 0:
            os.execvpe(CLIENTS[0], [CLIENTS[0], *args], self.docker_env())
        self.addCleanup(self.reap, pid, master)
        # A known size before the CLI starts: it sends it to the daemon as the tty's size.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        return pid, master

    @staticmethod
    def reap(pid, master):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(master)

    @staticmethod
    def read_until(master, text, timeout=60):
        seen = b""
        deadline = time.monotonic() + timeout
        while text.encode() not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never came; the terminal showed {seen[-2000:]!r}")
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {text!r}: {seen[-2000:]!r}")
                seen += chunk
        return seen

    @staticmethod
    def exit_code(pid, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        raise AssertionError("the docker CLI did not exit")

    def test_run_it_is_a_terminal_with_the_clients_size(self):
        pid, master = self.spawn("run", "-it", "--rm", "--name", "term", IMAGE, "sh")
        self.read_until(master, "# ")
        os.write(master, b"tty; stty size; echo $((6*7))\r")
        shown = self.read_until(master, "42")
        self.assertIn(b"/dev/pts/", shown)
        self.assertIn(b"30 100", shown)
        # A resize of the client's terminal reaches the container's.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.kill(pid, signal.SIGWINCH)
        wait_until(lambda: b"40 120" in self.docker("exec", "term", "sh", "-c", "stty -F /dev/pts/0 size").stdout,
                   "the new size in the container")
        os.write(master, b"exit 7\r")
        self.assertEqual(self.exit_code(pid), 7)

    def test_detach_keys_leave_the_container_running_and_attach_comes_back(self):
        self.docker("run", "-dit", "--name", "detached", IMAGE, "sh")
        pid, master = self.spawn("attach", "detached")
        os.write(master, b"echo attached-$((1+1))\r")
        self.read_until(master, "attached-2")
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        self.exit_code(pid)
        self.assertEqual(self.state("detached")["Status"], "running")
        pid, master = self.spawn("exec", "-it", "detached", "sh")
        os.write(master, b"echo in-exec-$((2+3)); exit 3\r")
        self.read_until(master, "in-exec-5")
        self.assertEqual(self.exit_code(pid), 3)


class EventsTest(ContainerCase):
    def test_container_events_in_dockers_shape(self):
        since = str(int(time.time()) - 1)
        self.docker("run", "--rm", "--name", "evented", "--label", "team=a", IMAGE, "sh", "-c", "exit 3",
                    check=False)
        until = str(int(time.time()) + 1)
        lines = self.out("events", "--since", since, "--until", until, "--filter", "container=evented",
                         "--format", "{{json .}}").splitlines()
        events = [json.loads(line) for line in lines]
        actions = [event["Action"] for event in events]
        for expected in ("create", "attach", "start", "die", "destroy"):
            self.assertIn(expected, actions, events)
        die = next(event for event in events if event["Action"] == "die")
        self.assertEqual(die["Type"], "container")
        self.assertEqual(die["Actor"]["Attributes"]["exitCode"], "3")
        self.assertEqual(die["Actor"]["Attributes"]["name"], "evented")
        self.assertEqual(die["Actor"]["Attributes"]["team"], "a")
        self.assertEqual(die["from"], IMAGE)


class KilndRestartTest(ContainerCase):
    """kilnd killed with -9 (or stopped) while containers run: they keep running, kilnd takes them over when it
    comes back, and nothing they printed meanwhile is lost (dockerd's live-restore)."""
    kiln_only = True

    def test_a_counter_survives_kill_9_without_losing_a_line(self):
        self.docker("run", "-d", "--name", "counter", IMAGE, "sh", "-c",
                    "i=0; while true; do echo $i; i=$((i+1)); usleep 50000; done")
        self.wait_for_log("counter", "\n20\n")
        pid_before = self.state("counter")["Pid"]
        self.kilnd.kill9()
        time.sleep(2)  # the container keeps printing with nobody reading: the agent holds it
        self.kilnd.start()
        state = self.state("counter")
        self.assertEqual((state["Status"], state["Pid"]), ("running", pid_before), self.server_log())
        self.wait_for_log("counter", "\n150\n", timeout=120)
        lines = [int(line) for line in self.docker("logs", "counter").stdout.decode().split()]
        self.assertEqual(lines, list(range(len(lines))), "a line was lost or repeated across the restart")
        # Still fully under control: exec, stop with its exit code.
        self.assertEqual(self.out("exec", "counter", "echo", "alive"), "alive")
        self.docker("stop", "-t", "1", "counter")
        self.assertEqual(self.state("counter")["ExitCode"], 137)

    def test_a_graceful_restart_keeps_containers_and_restart_policies_apply(self):
        self.start_looping("kept")
        self.docker("run", "-d", "--name", "flaky", "--restart", "always", IMAGE, "sh", "-c",
                    "echo run; sleep 1; exit 1")
        self.wait_for_log("flaky", "run")
        self.kilnd.stop()
        self.kilnd.start()
        self.assertEqual(self.state("kept")["Status"], "running", self.server_log())
        self.assertEqual(self.out("exec", "kept", "echo", "ok"), "ok")
        wait_until(lambda: self.inspect("flaky")["RestartCount"] >= 2, "flaky restarted after kilnd came back",
                   timeout=120)


class BadInputTest(ContainerCase):
    def test_malformed_bodies_are_400(self):
        for body, words in [(b"{broken", "invalid"), (b'{"Image": 5}', "cannot unmarshal number"),
                            (b'{"Image": "busybox", "Cmd": {"a": 1}}', "cannot unmarshal object"),
                            (b'{"Image": "busybox", "HostConfig": {"Memory": "lots"}}', "cannot unmarshal string")]:
            with self.subTest(body=body):
                status, reply = self.raw("POST", "/v1.41/containers/create", body)
                # dockerd 20.10 still answered 500 here (moby 23 made it a 400); the issue asks for 400.
                self.assertIn(status, (400,) if self.kilnd else (400, 500), reply)
                self.assertIn(words, reply["message"].lower())
        # Unknown fields are ignored, as dockerd does.
        status, reply = self.raw("POST", "/v1.41/containers/create?name=lenient",
                                 json.dumps({"Image": IMAGE, "Cmd": ["true"], "Colour": "red"}))
        self.assertEqual(status, 201, reply)
        self.assertRegex(reply["Id"], r"^[0-9a-f]{64}$")
        status, reply = self.raw("POST", "/v1.41/containers/lenient/exec", b"{broken")
        self.assertIn(status, (400,) if self.kilnd else (400, 500), reply)
        # Through the SDK's low-level API too.
        import docker
        api = docker.APIClient(base_url="unix://" + self.docker_socket, version="auto")
        self.addCleanup(api.close)
        response = api._post(api._url("/containers/create"), data="{broken",
                             headers={"Content-Type": "application/json"})
        self.assertIn(response.status_code, (400,) if self.kilnd else (400, 500))
        self.assertTrue(response.json()["message"])

    def test_unknown_ids_are_404(self):
        for args in (["start", "nosuch"], ["stop", "nosuch"], ["kill", "nosuch"], ["rm", "nosuch"],
                     ["logs", "nosuch"], ["wait", "nosuch"], ["exec", "nosuch", "true"], ["pause", "nosuch"],
                     ["rename", "nosuch", "other"], ["container", "inspect", "nosuch"], ["restart", "nosuch"]):
            with self.subTest(args=args):
                result = self.docker(*args, check=False)
                self.assertEqual(result.returncode, 1)
                self.assertIn("No such container: nosuch", result.stderr.decode())
        status, reply = self.raw("GET", "/containers/nosuch/json")
        self.assertEqual((status, reply), (404, {"message": "No such container: nosuch"}))
        status, reply = self.raw("GET", "/exec/nosuch/json")
        self.assertEqual(status, 404)
        self.assertIn("No such exec instance: nosuch", reply["message"])

    def test_conflicting_and_bad_names(self):
        first = self.out("create", "--name", "dup", IMAGE, "true")
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                second = self.docker("create", "--name", "dup", IMAGE, "true", client=client, check=False)
                self.assertEqual(second.returncode, 1)  # `docker run` says 125 for the same error
                self.assertIn(f'Conflict. The container name "/dup" is already in use by container "{first}". You '
                              "have to remove (or rename) that container to be able to reuse that name.",
                              second.stderr.decode())
        run = self.docker("run", "--name", "dup", IMAGE, "true", check=False)
        self.assertEqual(run.returncode, 125)
        self.assertIn("Conflict. The container name", run.stderr.decode())
        bad = self.docker("run", "--name", "bad name!", IMAGE, "true", check=False)
        self.assertEqual(bad.returncode, 125)
        self.assertIn("Invalid container name (bad name!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                      bad.stderr.decode())
        status, reply = self.raw("POST", "/containers/create?name=dup", json.dumps({"Image": IMAGE}))
        self.assertEqual(status, 409, reply)
        self.assertEqual(self.out("ps", "-a", "--format", "{{.Names}}"), "dup")

    def test_rm_of_a_running_container_needs_force(self):
        container = self.start_looping("busy")
        refused = self.docker("rm", "busy", check=False)
        self.assertEqual(refused.returncode, 1)
        self.assertIn(f"You cannot remove a running container {container}. Stop the container before attempting "
                      "removal or force remove", refused.stderr.decode())
        self.assertEqual(self.state("busy")["Status"], "running")
        missing_image = self.docker("create", "--pull", "never", "nosuchimage:1", check=False)
        self.assertEqual(missing_image.returncode, 1)
        self.assertIn("No such image: nosuchimage:1", missing_image.stderr.decode())


class SdkTest(ContainerCase):
    def client(self):
        import docker
        client = docker.DockerClient(base_url="unix://" + self.docker_socket, version="auto")
        self.addCleanup(client.close)
        return client

    def test_run_with_remove_returns_the_output(self):
        import docker
        client = self.client()
        output = client.containers.run(IMAGE, ["sh", "-c", "echo from sdk; echo err >&2"], remove=True)
        self.assertEqual(output, b"from sdk\n")
        with self.assertRaises(docker.errors.ContainerError) as raised:
            client.containers.run(IMAGE, ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
        self.assertEqual(raised.exception.exit_status, 3)
        self.assertIn(b"oops", raised.exception.stderr)
        self.assertEqual(client.containers.list(all=True), [])

    def test_detached_logs_wait_and_remove(self):
        client = self.client()
        container = client.containers.run(IMAGE, ["sh", "-c", "echo one; sleep 0.2; echo two >&2; exit 2"], detach=True,
                                          name="sdk-bg", labels={"via": "sdk"}, environment={"X": "y"})
        self.assertEqual(container.wait(timeout=60), {"StatusCode": 2, "Error": None})
        self.assertEqual(container.logs(), b"one\ntwo\n")
        self.assertEqual(container.logs(stderr=False), b"one\n")
        container.reload()
        self.assertEqual((container.status, container.name, container.labels), ("exited", "sdk-bg", {"via": "sdk"}))
        self.assertEqual([c.id for c in client.containers.list(all=True, filters={"label": "via=sdk"})],
                         [container.id])
        running = client.containers.run(IMAGE, ["sleep", "100"], detach=True)
        running.reload()
        self.assertEqual(running.status, "running")
        self.assertEqual(running.exec_run(["echo", "inside"]).output, b"inside\n")
        result = running.exec_run(["sh", "-c", "exit 3"])
        self.assertEqual(result.exit_code, 3)
        running.remove(force=True)
        container.remove(force=True)
        self.assertEqual(client.containers.list(all=True), [])


if __name__ == "__main__":
    unittest.main()

"""Shared by the Docker benchmarks (bench/docker-run, bench/fork): the daemons they start (kilnd, dockerd with
runc or runsc), each on its own socket under a scratch directory, the busybox image they import, timed docker
CLI runs, and per-process memory from /proc. Python 3 stdlib only; the benchmarks put this folder on sys.path."""
import ctypes
import datetime
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io, 20.10
IMAGE = "busybox:latest"
APPLETS = ("sh", "true", "sleep", "ls", "cat", "echo", "env", "head", "mkdir", "rm", "sync")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def _die_with_parent(sig):
    def setup():
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    return setup


def busybox_tar():
    """An uncompressed tar of the host's static busybox with a few applet links, /etc/passwd and /etc/group:
    what `docker import` turns into a one-layer image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(name, kind, mode, data=b"", link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 1704067200, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("usr", 0o755),
                                ("usr/bin", 0o755), ("proc", 0o755), ("sys", 0o755), ("dev", 0o755)):
            add(directory, tarfile.DIRTYPE, mode)
        with open("/bin/busybox", "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
    return buffer.getvalue()


# --- /proc -------------------------------------------------------------------------------------------------
def process_table():
    """{pid: (ppid, comm)} of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        table[int(entry)] = (ppid, comm)
    return table


def with_descendants(roots, table):
    found, frontier = set(), [pid for pid in roots if pid in table]
    while frontier:
        pid = frontier.pop()
        if pid in found:
            continue
        found.add(pid)
        frontier.extend(child for child, (ppid, _) in table.items() if ppid == pid)
    return sorted(found)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def pids_naming(marker):
    """Pids whose command line mentions `marker` (a scratch directory), not this program's."""
    return [pid for pid in process_table() if pid != os.getpid() and
            any(marker.encode() in arg for arg in cmdline(pid))]


def label(pid, comm):
    """What a process is: argv[0]'s base name (runsc re-executes itself as runsc-gofer, runsc-sandbox, whose
    comm is only "exe"), plus argv[1] when argv[0] says nothing ("/proc/self/exe umount")."""
    args = [arg.decode(errors="replace") for arg in cmdline(pid) if arg]
    if not args:
        return comm
    name = os.path.basename(args[0])
    if name in ("exe", "runsc") and len(args) > 1:
        name += " " + args[1]
    return name


MEMORY_FIELDS = ("Pss", "Rss", "Pss_Anon", "Pss_File", "Pss_Shmem")


def memory_kib(pid):
    """{field: KiB} of MEMORY_FIELDS from /proc/PID/smaps_rollup; None if the process is gone. Pss_Shmem of
    QEMU is the guest RAM the guest touched (a memfd); Pss_Anon holds QEMU's heap and TCG's code buffer."""
    values = dict.fromkeys(MEMORY_FIELDS, 0)
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0])
    except OSError:
        return None
    return values


def kill_all(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def unmount_under(directory):
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(directory)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def scratch_workspace(prefix, daemons, keep_logs=None):
    """A scratch directory under /tmp (short: unix socket paths live under it) that is removed at exit, also
    on SIGINT/SIGTERM/SIGHUP, after stopping every daemon in `daemons` (a dict the caller fills later) and
    copying their logs to `keep_logs` if given."""
    import atexit
    import tempfile
    work = tempfile.mkdtemp(prefix=prefix, dir="/tmp")

    def cleanup():
        for daemon in daemons.values():
            try:
                daemon.stop()
            except Exception as e:  # noqa: BLE001 — keep cleaning up the others
                log(f"{daemon.name}: cleanup: {e}")
        if keep_logs:
            os.makedirs(keep_logs, exist_ok=True)
            for daemon in daemons.values():
                if os.path.exists(daemon.log_path):
                    shutil.copy(daemon.log_path, os.path.join(keep_logs, f"{daemon.name}.log"))
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    return work


def wait_until(predicate, what, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # polling for a socket or a process, not guessing a duration


def dechunk(body):
    """The payload of an HTTP/1.1 chunked body."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return out


# --- daemons -----------------------------------------------------------------------------------------------
class Daemon:
    """One Docker Engine API server with its own socket; a docker CLI pointed at it."""

    def __init__(self, name, work):
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.config_dir = os.path.join(self.dir, "docker-config")
        os.makedirs(self.config_dir)
        self.socket = None
        self.error = None  # why this daemon has no figures, once something failed

    def env(self):
        return {"PATH": os.environ["PATH"], "HOME": self.dir, "DOCKER_CONFIG": self.config_dir,
                "DOCKER_HOST": "unix://" + self.socket}

    def docker(self, *args, input=None, timeout=300):
        result = subprocess.run([DOCKER_CLI, *args], capture_output=True, env=self.env(), input=input,
                                timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)} exited {result.returncode}: "
                               f"{result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode(errors="replace")

    def remove_all_containers(self):
        if self.socket and os.path.exists(self.socket):
            ids = subprocess.run([DOCKER_CLI, "ps", "-aq", "--no-trunc"], capture_output=True, env=self.env(),
                                 timeout=120).stdout.decode().split()
            if ids:
                subprocess.run([DOCKER_CLI, "rm", "-f", *ids], capture_output=True, env=self.env(), timeout=600)

    def wait_api(self, process):
        def answers():
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {process.returncode}:\n{self.log_tail()}")
            return os.path.exists(self.socket) and subprocess.run(
                [DOCKER_CLI, "version"], capture_output=True, env=self.env()).returncode == 0
        wait_until(answers, f"{self.name}'s Docker API", 120)

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class Dockerd(Daemon):
    """dockerd 20.10 with its own managed containerd; runtime None (runc) or "runsc" as the default."""

    def __init__(self, name, work, runtime=None):
        super().__init__(name, work)
        self.socket = os.path.join(self.dir, "docker.sock")
        self.exec_root = os.path.join(self.dir, "exec")
        self.log_path = os.path.join(self.dir, "dockerd.log")
        self.containerd_socket = os.path.join(self.exec_root, "containerd", "containerd.sock")
        self.config = {}
        if runtime == "runsc":
            self.config = {"runtimes": {"runsc": {"path": shutil.which("runsc") or "/usr/bin/runsc",
                                                  "runtimeArgs": ["--network=none"]}},
                           "default-runtime": "runsc"}
        self.process = None

    def start(self):
        config_path = os.path.join(self.dir, "daemon.json")
        with open(config_path, "w") as f:
            json.dump(self.config, f)
        command = ["dockerd", "--config-file", config_path, "--bridge=none", "--iptables=false",
                   "--data-root", os.path.join(self.dir, "root"), "--exec-root", self.exec_root,
                   "--pidfile", os.path.join(self.dir, "dockerd.pid"), "-H", "unix://" + self.socket]
        log(f"{self.name}: {' '.join(command)}")
        with open(self.log_path, "ab") as out:
            # SIGTERM if this program dies unannounced: dockerd then stops its containers itself.
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent(signal.SIGTERM))
        self.wait_api(self.process)

    def container_roots(self, container_id):
        """The containerd shim of the container (one per container with containerd 1.6's runc v2 shim)."""
        roots = []
        for pid in process_table():
            args = cmdline(pid)
            if (args and args[0].endswith(b"containerd-shim-runc-v2") and container_id.encode() in args and
                    self.containerd_socket.encode() in args):
                roots.append(pid)
        return roots

    def daemon_pids(self):
        return with_descendants([self.process.pid], process_table()) if self.process else []

    def stop(self):
        try:
            self.remove_all_containers()
        except (OSError, subprocess.SubprocessError) as e:
            log(f"{self.name}: removing containers: {e}")
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        # Shims, runsc gofers and sandboxes are not dockerd's children; a failed runsc start leaves them behind.
        kill_all(pids_naming(self.dir))
        unmount_under(self.dir)


class Kilnd(Daemon):
    """kilnd --detach with its own --root and --run-dir under the scratch directory; `extra_args` are added to
    its command line (e.g. ["--boot=cold"])."""

    def __init__(self, name, work, binary, extra_args=()):
        super().__init__(name, work)
        self.binary = binary
        self.extra_args = list(extra_args)
        self.root = os.path.join(self.dir, "root")
        self.run_dir = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.run_dir, "docker.sock")
        self.log_path = os.path.join(self.run_dir, "kilnd.log")
        self.pid = None

    def start(self):
        command = [self.binary, "--root", self.root, "--run-dir", self.run_dir, "--detach", "--log-level", "debug",
                   *self.extra_args]
        log(f"{self.name}: {' '.join(command)}")
        result = subprocess.run(command, capture_output=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"kilnd --detach exited {result.returncode}: {result.stderr.decode().strip()}\n"
                               f"{self.log_tail()}")
        with open(os.path.join(self.run_dir, "kilnd.pid")) as f:
            self.pid = int(f.read().strip())
        self.wait_api(None)

    def kiln_api(self, path):
        """GET `path` of the Kiln VM API (kilnd's main socket RUN/kiln.sock): the decoded JSON body."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(os.path.join(self.run_dir, "kiln.sock"))
        with sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: kilnd\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if status.split()[1:2] != ["200"]:
            raise RuntimeError(f"{self.name}: GET {path}: {status} {body[:300]!r}")
        if b"transfer-encoding: chunked" in head.lower():
            body = dechunk(body)
        return json.loads(body)

    def vm_of(self, container_id):
        """The Kiln VM (GET /v1/vms/{id}) of a container: the one labelled kiln.container.id=<full id>."""
        for vm in self.kiln_api("/v1/vms"):
            if vm.get("labels", {}).get("kiln.container.id") == container_id:
                return self.kiln_api(f"/v1/vms/{vm['id']}")
        raise RuntimeError(f"{self.name}: no VM has the label kiln.container.id={container_id}")

    def container_roots(self, container_id):
        pid = int(self.docker("inspect", "--type", "container", "--format", "{{.State.Pid}}", container_id))
        return [pid] if pid > 0 else []

    def daemon_pids(self):
        return [self.pid] if self.pid else []

    def stop(self):
        try:
            self.remove_all_containers()
        except (OSError, subprocess.SubprocessError) as e:
            log(f"{self.name}: removing containers: {e}")
        if self.pid:
            kill_all([self.pid], signal.SIGTERM)
            try:
                wait_until(lambda: not os.path.exists(f"/proc/{self.pid}"), "kilnd to exit", 60)
            except RuntimeError:
                kill_all([self.pid])
        self.pid = None
        kill_all(pids_naming(self.dir))  # VMs outlive kilnd by design; any left here are this bench's
        unmount_under(self.dir)


# --- measurements ------------------------------------------------------------------------------------------
def timed_run(daemon, args):
    start = time.monotonic()
    result = subprocess.run([DOCKER_CLI, *args], capture_output=True, env=daemon.env(), timeout=300)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace').strip()}")
    return elapsed, result.stdout.decode().strip()


def measure_idle(daemon, count, run_args, settle, before_remove=None):
    """Starts `count` detached sleep containers, returns (start times, per-process PSS rows, daemon PSS).
    `before_remove(ids)`, if given, is called with the containers' ids after the PSS is read, before they
    are removed."""
    starts, ids = [], []
    for i in range(count):
        elapsed, container_id = timed_run(daemon, ["run", "-d", *run_args, IMAGE, "sleep", "3600"])
        starts.append(elapsed)
        ids.append(container_id)
        log(f"{daemon.name}: idle {i + 1}/{count} docker run -d: {elapsed:.3f} s")
    log(f"{daemon.name}: {count} idle containers up; settling {settle} s")
    time.sleep(settle)
    table = process_table()
    rows = []
    for container_id in ids:
        roots = daemon.container_roots(container_id)
        if not roots:
            raise RuntimeError(f"{daemon.name}: no process found for container {container_id[:12]}")
        for pid in with_descendants(roots, table):
            usage = memory_kib(pid)
            if usage:
                rows.append((container_id[:12], pid, label(pid, table[pid][1]), usage))
    counted = {row[1] for row in rows}
    daemon_pss = sum((memory_kib(pid) or {"Pss": 0})["Pss"] for pid in daemon.daemon_pids() if pid not in counted)
    for row in rows:
        log(f"{daemon.name}: container {row[0]} pid {row[1]} {row[2]}: " +
            ", ".join(f"{key} {value} KiB" for key, value in row[3].items()))
    log(f"{daemon.name}: daemon itself (not counted per container): Pss {daemon_pss} KiB")
    if before_remove:
        before_remove(ids)
    daemon.remove_all_containers()
    return starts, rows, daemon_pss



KILND_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \w+\s+(.*)$")
KILND_PHASES = (
    ("POST /containers/create (request duration)", "create_request", None),
    ("create answered → QEMU launched", "created", "launch"),
    ("QEMU launched → VM started (agent answered)", "launch", "vm"),
    ("VM started → container started", "vm", "started"),
    ("container started → exited (`true` runs; the VM stopped: kilnd logs the exit after that)", "started",
     "exited"),
    ("exited → removed (--rm: the VM and its writable layer deleted)", "exited", "removed"),
)


def kilnd_phases(log_path, skip, count):
    """Where time goes in kilnd's `docker run --rm`, from the debug log's timestamps (millisecond resolution):
    per phase, the durations of containers skip .. skip+count-1 in creation order."""
    containers, current = [], {}  # names repeat (random names); `current` maps a name to its newest record
    with open(log_path, errors="replace") as f:
        for line in f:
            match = KILND_LOG_LINE.match(line)
            if not match:
                continue
            when = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            text = match.group(2)
            if found := re.match(r"container created container=(\S+)", text):
                current[found.group(1)] = {}
                containers.append(current[found.group(1)])
            elif found := re.match(r"http request method=POST path=/containers/create status=201 duration_ms=(\d+)",
                                   text):
                if containers:
                    containers[-1]["created"] = when
                    containers[-1]["create_request"] = int(found.group(1)) / 1000
            elif found := re.match(r"launching QEMU vm=(\S+)", text):
                current.get(found.group(1), {})["launch"] = when
            elif found := re.match(r"VM started vm=(\S+)", text):
                current.get(found.group(1), {})["vm"] = when
            elif found := re.match(r"container (started|exited|removed) container=(\S+)", text):
                current.get(found.group(2), {}).setdefault(found.group(1), when)
    chosen = containers[skip:skip + count]
    phases = {}
    for label, start, end in KILND_PHASES:
        values = [c[start] if end is None else c[end] - c[start] for c in chosen
                  if start in c and (end is None or end in c)]
        if values:
            phases[label] = summary(values)
    return phases


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def default_kilnd():
    """The release build's kilnd, unless the dev build's is newer (a stale release build would measure old
    code)."""
    builds = [os.path.join(REPO, "build", preset, "bin", "kilnd") for preset in ("release", "dev")]
    present = [path for path in builds if os.path.exists(path)]
    if not present:
        return builds[0]
    return max(present, key=lambda path: (os.path.getmtime(path), path == builds[0]))

"""Fixtures for tests against a real kilnd: a daemon with its own --root and --run-dir (so several coexist),
a tiny HTTP client over its unix socket, exec over the upgraded stream (Docker stdcopy framing), and cleanup
of VMs left running (they outlive kilnd by design)."""
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../support"))
from kiln_test_support import qemu_pids_naming, release_kiln_network  # noqa: E402

BIN_DIR = os.environ.get("KILN_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/dev/bin"))
KILND = os.path.join(BIN_DIR, "kilnd")
KILN = os.path.join(BIN_DIR, "kiln")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=300):
        super().__init__("kilnd", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Kilnd:
    """One kilnd process. start()/stop()/kill9() may be called repeatedly on the same root.

    `boot` is kilnd's --boot (how container VMs start: "fork" or "cold"); by default the environment's
    KILN_TEST_BOOT, so a whole suite runs against a cold-booting kilnd (tests/docker registers one that way),
    else kilnd's own default (fork)."""

    def __init__(self, extra_args=(), boot=None):
        self.dir = tempfile.mkdtemp(prefix="kilnd-test-")
        self.root = os.path.join(self.dir, "root")
        self.run_dir = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.run_dir, "kiln.sock")
        self.log_path = os.path.join(self.dir, "kilnd.log")
        self.extra_args = list(extra_args)
        self.boot = boot or os.environ.get("KILN_TEST_BOOT") or None
        if self.boot:
            self.extra_args.append(f"--boot={self.boot}")
        self.process = None

    def start(self, extra_args=()):
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # a kill -9'd kilnd leaves it; kilnd replaces stale sockets anyway
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [KILND, "--root", self.root, "--run-dir", self.run_dir, "--log-level", "debug",
                 *self.extra_args, *extra_args],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kilnd exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/v1/ping", timeout=5).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)  # polling for the socket, not guessing a duration
        raise RuntimeError("kilnd did not come up:\n" + self.log())

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.process = None

    def kill9(self):
        self.process.kill()
        self.process.wait()
        self.process = None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def qemu_pids(self):
        return qemu_pids_naming(self.run_dir)

    def cleanup(self):
        self.stop()
        for pid in self.qemu_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        release_kiln_network(self.run_dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- HTTP ---------------------------------------------------------------------------------------------
    def request(self, method, path, body=None, raw=None, headers=None, timeout=300):
        connection = UnixConnection(self.socket, timeout=timeout)
        try:
            payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
            all_headers = {"Content-Type": "application/json"} if payload is not None else {}
            all_headers.update(headers or {})
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            return Response(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def ok(self, method, path, body=None, status=200):
        response = self.request(method, path, body)
        if response.status != status:
            raise AssertionError(f"{method} {path}: expected {status}, got {response!r}\n{self.log()}")
        return response.json() if response.body else None

    def create(self, name, **fields):
        return self.ok("POST", "/v1/vms", {"name": name, **fields}, status=201)

    def names(self):
        return sorted(vm["name"] for vm in self.ok("GET", "/v1/vms"))

    def exec(self, vm, cmd, stdin=None, tty=False, timeout=120):
        """Runs cmd in the VM; returns (exit_code, stdout, stderr). With a tty, stdout has everything."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.socket)
        body = json.dumps({"cmd": cmd, "stdin": stdin is not None, "tty": tty}).encode()
        sock.sendall(
            f"POST /v1/vms/{vm}/exec HTTP/1.1\r\nHost: kilnd\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                raise AssertionError(f"connection closed in the response head: {head!r}")
            head += chunk
        head_text, rest = head.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head_text.decode().split("\r\n")
        status = int(status_line.split()[1])
        headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in header_lines}
        if status != 101:
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                rest += sock.recv(65536)
            sock.close()
            raise ExecRefused(status, rest)
        exec_id = headers["x-kiln-exec-id"]
        if stdin is not None:
            view = memoryview(stdin)
            # Interleave sending and receiving so a large stdin cannot deadlock against output.
            sock.setblocking(False)
            received = bytearray(rest)
            while view:
                try:
                    sent = sock.send(view[:65536])
                    view = view[sent:]
                except BlockingIOError:
                    pass
                try:
                    data = sock.recv(65536)
                    if data:
                        received += data
                except BlockingIOError:
                    time.sleep(0.001)
            sock.setblocking(True)
            sock.settimeout(timeout)
            rest = bytes(received)
        sock.shutdown(socket.SHUT_WR)
        data = bytearray(rest)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        stdout, stderr = (bytes(data), b"") if tty else demultiplex(bytes(data))
        state = self.ok("GET", f"/v1/vms/{vm}/exec/{exec_id}")
        deadline = time.monotonic() + 30
        while state["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
            state = self.ok("GET", f"/v1/vms/{vm}/exec/{exec_id}")
        return state["exit_code"], stdout, stderr


class ExecRefused(Exception):
    def __init__(self, status, body):
        super().__init__(f"exec refused: {status} {body!r}")
        self.status = status
        self.body = body


def demultiplex(data):
    out, err = bytearray(), bytearray()
    while data:
        if len(data) < 8:
            raise AssertionError(f"truncated stdcopy header: {data!r}")
        stream, size = data[0], struct.unpack(">I", data[4:8])[0]
        payload = data[8:8 + size]
        if len(payload) != size:
            raise AssertionError("truncated stdcopy frame")
        (out if stream == 1 else err).extend(payload)
        data = data[8 + size:]
    return bytes(out), bytes(err)


class KilndTestCase(unittest.TestCase):
    """A fresh kilnd per test, and a check of its Docker-style errors."""

    def setUp(self):
        self.kilnd = Kilnd()
        self.addCleanup(self.kilnd.cleanup)
        self.kilnd.start()

    def assertError(self, response, status, *fragments):
        self.assertEqual(response.status, status, response)
        message = response.json()["message"]
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

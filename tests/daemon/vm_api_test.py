"""The Kiln VM API against a real kilnd with real VMs (QEMU TCG): lifecycle, persistence across stop/start
and kilnd restarts (including kill -9), exec streams and exit codes, console, events, bad input."""
import json
import os
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest

from kilnd_fixtures import KILN, ExecRefused, Kilnd, KilndTestCase


class LifecycleTest(KilndTestCase):
    def test_lifecycle_and_persistence_across_stop_start(self):
        k = self.kilnd
        vm = k.create("life", memory_mib=256)
        self.assertEqual(vm["state"], "stopped")
        self.assertEqual(len(vm["id"]), 64)
        self.assertEqual(k.ok("POST", "/v1/vms/life/start")["state"], "running")
        code, out, _ = k.exec("life", ["sh", "-c", "mount | grep ' / '; echo kept > /root/marker; sync"])
        self.assertEqual(code, 0)
        self.assertIn(b"ext4", out)
        self.assertEqual(k.exec("life", ["hostname"])[1], b"life\n")  # the guest answers to the VM's name
        self.assertEqual(k.ok("POST", "/v1/vms/life/pause")["state"], "paused")
        with self.assertRaises(ExecRefused) as refused:
            k.exec("life", ["true"])
        self.assertEqual(refused.exception.status, 409)
        self.assertIn(b"paused", refused.exception.body)
        self.assertEqual(k.ok("POST", "/v1/vms/life/resume")["state"], "running")
        stopped = k.ok("POST", "/v1/vms/life/stop?timeout=30")
        self.assertEqual(stopped["state"], "stopped")
        self.assertEqual(stopped["state_reason"], "")  # graceful, not killed
        self.assertEqual(k.qemu_pids(), [])
        k.ok("POST", "/v1/vms/life/start")
        self.assertEqual(k.exec("life", ["cat", "/root/marker"])[1], b"kept\n")
        self.assertEqual(k.ok("POST", "/v1/vms/life/restart")["state"], "running")
        self.assertEqual(k.exec("life", ["cat", "/root/marker"])[1], b"kept\n")
        killed = k.ok("POST", "/v1/vms/life/kill")
        self.assertEqual((killed["state"], killed["state_reason"]), ("stopped", "killed"))
        self.assertEqual(k.request("DELETE", "/v1/vms/life").status, 204)
        self.assertEqual(k.request("GET", "/v1/vms/life").status, 404)
        self.assertFalse(os.listdir(os.path.join(k.root, "vms")))

    def test_state_conflicts_name_the_state(self):
        k = self.kilnd
        k.create("idle", memory_mib=128)
        self.assertError(k.request("POST", "/v1/vms/idle/pause"), 409, "stopped")
        self.assertError(k.request("POST", "/v1/vms/idle/resume"), 409, "stopped")
        self.assertError(k.request("POST", "/v1/vms/idle/kill"), 409, "stopped")
        # Stopping a stopped VM is not an error (as docker stop of a stopped container).
        self.assertEqual(k.request("POST", "/v1/vms/idle/stop").status, 200)

    def test_delete_running_needs_force(self):
        k = self.kilnd
        k.create("busy", memory_mib=128)
        k.ok("POST", "/v1/vms/busy/start")
        self.assertError(k.request("DELETE", "/v1/vms/busy"), 409, "running")
        self.assertEqual(k.request("DELETE", "/v1/vms/busy?force=1").status, 204)
        self.assertEqual(k.qemu_pids(), [])
        self.assertEqual(k.names(), [])

    def test_vm_powering_off_itself_is_recorded(self):
        k = self.kilnd
        k.create("selfstop", memory_mib=128)
        k.ok("POST", "/v1/vms/selfstop/start")
        for pid in k.qemu_pids():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while k.ok("GET", "/v1/vms/selfstop")["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        vm = k.ok("GET", "/v1/vms/selfstop")
        self.assertEqual(vm["state"], "stopped")
        self.assertIn("killed by signal 9", vm["state_reason"])
        # And it starts again.
        k.ok("POST", "/v1/vms/selfstop/start")
        self.assertEqual(k.exec("selfstop", ["echo", "back"])[1], b"back\n")


class SuspendTest(KilndTestCase):
    def test_suspend_to_disk_and_restore(self):
        k = self.kilnd
        k.create("sleeper", memory_mib=256)
        k.ok("POST", "/v1/vms/sleeper/start")
        # A background process (its own session, so it is not an exec's) and a file in RAM (/tmp is tmpfs).
        k.exec("sleeper", ["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/pid; "
                                       "echo in-memory > /tmp/ram"])
        pid = k.exec("sleeper", ["cat", "/tmp/pid"])[1].strip()
        vm = k.ok("POST", "/v1/vms/sleeper/suspend")
        self.assertEqual(vm["state"], "suspended")
        self.assertEqual(k.qemu_pids(), [])  # no monitor, no host memory
        self.assertError(k.request("POST", "/v1/vms/sleeper/pause"), 409, "suspended")
        with self.assertRaises(ExecRefused):
            k.exec("sleeper", ["true"])
        # Suspended state survives a kilnd restart.
        k.stop()
        time.sleep(5)  # the guest's clock stands still meanwhile: a gap for the restore to close
        k.start()
        self.assertEqual(k.ok("GET", "/v1/vms/sleeper")["state"], "suspended")
        self.assertEqual(k.ok("POST", "/v1/vms/sleeper/start")["state"], "running")
        self.assertEqual(k.exec("sleeper", ["cat", "/tmp/ram"])[1], b"in-memory\n")
        self.assertEqual(k.exec("sleeper", ["kill", "-0", pid.decode()])[0], 0)
        self.assertEqual(k.exec("sleeper", ["hostname"])[1], b"sleeper\n")  # kept across the restore
        # The guest's clock was brought forward to the host's (it stood still while suspended).
        before = time.time()
        guest_now = int(k.exec("sleeper", ["date", "+%s"])[1])
        after = time.time()
        self.assertGreaterEqual(guest_now, int(before) - 1)
        self.assertLessEqual(guest_now, after + 1)
        # Stopping a suspended VM discards its saved state.
        k.ok("POST", "/v1/vms/sleeper/suspend")
        stopped = k.ok("POST", "/v1/vms/sleeper/stop")
        self.assertEqual(stopped["state"], "stopped")
        k.ok("POST", "/v1/vms/sleeper/start")
        self.assertNotEqual(k.exec("sleeper", ["cat", "/tmp/ram"])[0], 0)  # a fresh boot: RAM is gone


class RecoveryTest(KilndTestCase):
    def test_kill9_kilnd_vms_keep_running_and_are_reattached(self):
        k = self.kilnd
        k.create("survivor", memory_mib=128)
        k.create("paused", memory_mib=128)
        k.create("doomed", memory_mib=128)
        k.create("off", memory_mib=128)
        for name in ("survivor", "paused", "doomed"):
            k.ok("POST", f"/v1/vms/{name}/start")
        k.exec("survivor", ["sh", "-c", "echo before > /root/f; sync"])
        k.ok("POST", "/v1/vms/paused/pause")
        doomed_pid = k.ok("GET", "/v1/vms/doomed")["monitor_pid"]
        k.kill9()
        self.assertEqual(len(k.qemu_pids()), 3)  # VMs outlive the daemon
        os.kill(doomed_pid, signal.SIGKILL)  # this one dies while kilnd is down
        k.start()
        states = {vm["name"]: vm for vm in k.ok("GET", "/v1/vms")}
        self.assertEqual(states["survivor"]["state"], "running")
        self.assertEqual(states["paused"]["state"], "paused")
        self.assertEqual(states["off"]["state"], "stopped")
        self.assertEqual(states["doomed"]["state"], "stopped")
        self.assertIn("while kilnd was not running", states["doomed"]["state_reason"])
        self.assertEqual(k.exec("survivor", ["cat", "/root/f"])[1], b"before\n")
        k.ok("POST", "/v1/vms/paused/resume")
        self.assertEqual(k.exec("paused", ["echo", "ok"])[0], 0)
        k.ok("POST", "/v1/vms/doomed/start")
        self.assertEqual(k.exec("doomed", ["echo", "ok"])[0], 0)

    def test_sigterm_leaves_vms_running_and_restart_keeps_files(self):
        k = self.kilnd
        k.create("calm", memory_mib=128)
        k.ok("POST", "/v1/vms/calm/start")
        k.exec("calm", ["sh", "-c", "echo persisted > /root/g; sync"])
        k.stop()
        self.assertEqual(len(k.qemu_pids()), 1)
        k.start()
        self.assertEqual(k.ok("GET", "/v1/vms/calm")["state"], "running")
        k.ok("POST", "/v1/vms/calm/stop")
        k.stop()
        k.start()
        self.assertEqual(k.ok("GET", "/v1/vms/calm")["state"], "stopped")
        k.ok("POST", "/v1/vms/calm/start")
        self.assertEqual(k.exec("calm", ["cat", "/root/g"])[1], b"persisted\n")

    def test_second_kilnd_on_the_same_root_is_refused(self):
        second = subprocess.run(
            [self.kilnd_binary(), "--root", self.kilnd.root, "--run-dir", self.kilnd.run_dir + "2"],
            capture_output=True, text=True, timeout=60)
        self.assertNotEqual(second.returncode, 0)
        self.assertIn("already running", second.stdout + second.stderr)

    def kilnd_binary(self):
        from kilnd_fixtures import KILND
        return KILND


class ExecTest(KilndTestCase):
    @classmethod
    def vm(cls):
        return "runner"

    def setUp(self):
        super().setUp()
        self.kilnd.create("runner", memory_mib=256)
        self.kilnd.ok("POST", "/v1/vms/runner/start")

    def test_streams_and_exit_codes(self):
        k = self.kilnd
        code, out, err = k.exec("runner", ["sh", "-c", "echo out; echo err >&2; exit 3"])
        self.assertEqual((code, out, err), (3, b"out\n", b"err\n"))
        code, out, err = k.exec("runner", ["no-such-binary"])
        self.assertEqual(code, 127)
        self.assertIn(b"no-such-binary", err)
        code, _, _ = k.exec("runner", ["sh", "-c", "kill -TERM $$"])
        self.assertEqual(code, 143)
        payload = os.urandom(1 << 20)
        code, out, _ = k.exec("runner", ["cat"], stdin=payload)
        self.assertEqual(code, 0)
        self.assertEqual(out, payload)
        code, out, _ = k.exec("runner", ["sh", "-c", "test -t 0 && tty"], tty=True)
        self.assertEqual(code, 0)
        self.assertIn(b"/dev/pts/", out)

    def test_concurrent_execs(self):
        k = self.kilnd
        results = {}

        def run(i):
            results[i] = k.exec("runner", ["sh", "-c", f"for j in 1 2 3; do echo {i}-$j; done; exit {i}"])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for i in range(8):
            self.assertEqual(results[i], (i, f"{i}-1\n{i}-2\n{i}-3\n".encode(), b""))

    def test_console_follow_streams_until_the_vm_stops(self):
        k = self.kilnd
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(120)
        sock.connect(k.socket)
        sock.sendall(b"GET /v1/vms/runner/console?follow=1&tail=0 HTTP/1.1\r\nHost: kilnd\r\nConnection: close\r\n\r\n")
        received = bytearray()
        ended = threading.Event()

        def reader():
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received.extend(chunk)
            except OSError:
                pass
            ended.set()

        thread = threading.Thread(target=reader)
        thread.start()
        k.exec("runner", ["sh", "-c", "echo console-marker-42 > /dev/console"])
        deadline = time.monotonic() + 30
        while b"console-marker-42" not in received and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(b"console-marker-42", received)
        k.ok("POST", "/v1/vms/runner/stop")
        self.assertTrue(ended.wait(30), "the follow stream did not end when the VM stopped")
        thread.join()
        sock.close()

    def test_console_and_bad_exec_requests(self):
        k = self.kilnd
        console = k.request("GET", "/v1/vms/runner/console")
        self.assertEqual(console.status, 200)
        self.assertIn(b"host connected", console.body)
        tail = k.request("GET", "/v1/vms/runner/console?tail=1").body
        self.assertLessEqual(tail.count(b"\n"), 1)
        self.assertError(k.request("GET", "/v1/vms/runner/console?tail=x"), 400, "tail")
        self.assertError(k.request("POST", "/v1/vms/runner/exec", {"cmd": []}), 400, "cmd")
        self.assertError(k.request("POST", "/v1/vms/runner/exec", {"cmd": ["ls"], "bogus": 1}), 400, "bogus")
        self.assertError(k.request("POST", "/v1/vms/nope/exec", {"cmd": ["ls"]}), 404, "no such VM")
        self.assertError(k.request("GET", "/v1/vms/runner/exec/ffff"), 404, "no such exec")


class NetworkTest(KilndTestCase):
    """A plain VM's NIC on kilnd's default network: its address in the API, reachable from inside Kiln's
    network namespace (never from the host's), a guest port published on the host."""

    def test_a_vm_gets_an_address_that_answers_and_a_published_port(self):
        k = self.kilnd
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            host_port = probe.getsockname()[1]
        k.create("netvm", memory_mib=256, ports=[{"host_ip": "127.0.0.1", "host_port": host_port,
                                                   "guest_port": 8000}])
        self.assertEqual(k.ok("GET", "/v1/vms/netvm")["networks"], [{"network": "bridge"}])
        self.assertEqual(k.ok("GET", "/v1/vms/netvm/ip")["addresses"], [])
        k.ok("POST", "/v1/vms/netvm/start")
        vm = k.ok("GET", "/v1/vms/netvm")
        [address] = k.ok("GET", "/v1/vms/netvm/ip")["addresses"]
        self.assertEqual(vm["addresses"], [address])
        self.assertTrue(address.startswith("172.17."), vm)
        self.assertEqual(vm["networks"][0]["gateway"], "172.17.0.1")
        self.assertEqual(vm["ports"][0]["host_port"], host_port)
        namespace = os.path.join(k.run_dir, "net", "netns")
        pinged = subprocess.run(["nsenter", f"--net={namespace}", "busybox", "ping", "-c", "1", "-W", "5", address],
                                capture_output=True, text=True)
        self.assertEqual(pinged.returncode, 0, pinged.stdout + pinged.stderr)
        # AppCatalyst's clients read the same address.
        self.assertEqual(k.request("GET", f"/api/vms/{vm['id']}/ipaddress").json()["message"], address)
        # The guest serves; the host reaches it through the published port.
        code, out, err = k.exec("netvm", ["sh", "-c", "ip -o -4 addr show eth0; cat /etc/resolv.conf"])
        self.assertEqual(code, 0, err)
        self.assertIn(f"inet {address}/16", out.decode())
        self.assertIn("nameserver 172.17.0.1", out.decode())
        server = threading.Thread(target=k.exec, args=("netvm", ["sh", "-c", "echo from-the-vm | nc -l -p 8000"]),
                                  daemon=True)
        server.start()
        deadline = time.monotonic() + 30
        said = b""
        while time.monotonic() < deadline and not said:
            with socket.socket() as client:
                client.settimeout(5)
                try:
                    client.connect(("127.0.0.1", host_port))
                    said = client.recv(64)
                except OSError:
                    time.sleep(0.2)
        self.assertEqual(said, b"from-the-vm\n")
        server.join(timeout=30)
        # Stopped: no address, nothing listening.
        k.ok("POST", "/v1/vms/netvm/stop")
        self.assertEqual(k.ok("GET", "/v1/vms/netvm/ip")["addresses"], [])
        with socket.socket() as probe:
            self.assertNotEqual(probe.connect_ex(("127.0.0.1", host_port)), 0)


class EventsTest(KilndTestCase):
    def test_events_arrive_in_order(self):
        k = self.kilnd
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(k.socket)
        sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: kilnd\r\n\r\n")
        # Subscribed once the response head arrives: kilnd fixes the stream's starting point (the newest
        # event's seq) while handling the request, before it sends the head, so every later event is ours.
        sock.settimeout(30)
        received = bytearray()
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            self.assertTrue(chunk, "kilnd closed the events stream before answering")
            received.extend(chunk)
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), bytes(received))
        done = threading.Event()

        def reader():
            sock.settimeout(120)
            try:
                while not done.is_set():
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    received.extend(chunk)
            except OSError:
                return

        thread = threading.Thread(target=reader)
        thread.start()
        k.create("ev", memory_mib=128)
        k.ok("POST", "/v1/vms/ev/start")
        k.ok("POST", "/v1/vms/ev/pause")
        k.ok("POST", "/v1/vms/ev/resume")
        k.ok("POST", "/v1/vms/ev/stop")
        k.request("DELETE", "/v1/vms/ev")
        deadline = time.monotonic() + 10
        while b'"deleted"' not in received and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join()
        # The VM's own events (its network's connect and disconnect come in the same stream).
        events = [json.loads(line) for line in bytes(received).split(b"\n") if line.startswith(b"{")]
        actions = [event["action"] for event in events if event.get("type", "vm") == "vm"]
        self.assertEqual(actions, ["created", "started", "paused", "resumed", "stopped", "deleted"])
        # A late subscriber replays what it missed with ?since=.
        replay = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        replay.settimeout(30)
        replay.connect(k.socket)
        replay.sendall(b"GET /v1/events?since=0&vm=ev HTTP/1.1\r\nHost: kilnd\r\n\r\n")
        replayed = b""
        while b'"deleted"' not in replayed:
            chunk = replay.recv(65536)
            if not chunk:
                break
            replayed += chunk
        replay.close()
        self.assertIn(b'"created"', replayed)
        self.assertIn(b'"deleted"', replayed)


class BadInputTest(KilndTestCase):
    def test_bad_create_requests_create_nothing(self):
        k = self.kilnd
        host_memory_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
        cases = [
            (b"{not json", 400, "JSON"),
            (json.dumps({"name": 5}).encode(), 400, "name"),
            (json.dumps({"name": "x", "cpus": "two"}).encode(), 400, "cpus"),
            (json.dumps({"name": "x", "surprise": True}).encode(), 400, "surprise"),
            (json.dumps({"name": "-bad"}).encode(), 400, "invalid VM name"),
            (json.dumps({"name": "a" * 64}).encode(), 400, "invalid VM name"),
            (json.dumps({"name": "sp ace"}).encode(), 400, "invalid VM name"),
            (json.dumps({"name": "x", "memory_mib": 32}).encode(), 400, "64 MiB"),
            (json.dumps({"name": "x", "memory_mib": host_memory_mib + 1}).encode(), 400, "host"),
            (json.dumps({"name": "x", "cpus": os.cpu_count() + 1}).encode(), 400, "CPUs"),
            (json.dumps({"name": "x", "source": {"directory": "/no/such/dir"}}).encode(), 400, "does not exist"),
            (json.dumps({"name": "x", "source": {"tarball": "relative.tar"}}).encode(), 400, "absolute"),
            (json.dumps({"name": "x", "kernel": "/no/kernel"}).encode(), 400, "kernel"),
            (json.dumps([1, 2]).encode(), 400, ""),
        ]
        for body, status, fragment in cases:
            with self.subTest(body=body):
                self.assertError(k.request("POST", "/v1/vms", raw=body), status, fragment)
        self.assertEqual(k.names(), [])
        self.assertEqual(os.listdir(os.path.join(k.root, "vms")), [])

    def test_duplicate_names_and_unknown_ids(self):
        k = self.kilnd
        k.create("dup", memory_mib=128)
        self.assertError(k.request("POST", "/v1/vms", {"name": "dup"}), 409, "already in use")
        for method, path in [("GET", "/v1/vms/ghost"), ("POST", "/v1/vms/ghost/start"),
                             ("POST", "/v1/vms/ghost/stop"), ("DELETE", "/v1/vms/ghost"),
                             ("PATCH", "/v1/vms/ghost"), ("GET", "/v1/vms/ghost/console")]:
            body = {} if method == "PATCH" else None
            self.assertError(k.request(method, path, body), 404, "no such VM")
        self.assertEqual(k.request("GET", "/v1/nothing-here").status, 404)
        self.assertEqual(k.request("PUT", "/v1/vms").status, 405)

    def test_patch_only_when_stopped(self):
        k = self.kilnd
        k.create("tune", memory_mib=128, labels={"a": "1"})
        vm = k.ok("PATCH", "/v1/vms/tune", {"cpus": 1, "memory_mib": 160, "labels": {"b": "2"}})
        self.assertEqual((vm["memory_mib"], vm["labels"]), (160, {"b": "2"}))
        self.assertError(k.request("PATCH", "/v1/vms/tune", {"memory_mib": 10}), 400, "64 MiB")
        self.assertError(k.request("PATCH", "/v1/vms/tune", {"disk_mib": 10}), 400, "disk_mib")
        k.ok("POST", "/v1/vms/tune/start")
        self.assertEqual(k.exec("tune", ["sh", "-c", "grep MemTotal /proc/meminfo"])[0], 0)
        self.assertError(k.request("PATCH", "/v1/vms/tune", {"memory_mib": 200}), 409, "running")
        self.assertEqual(k.ok("PATCH", "/v1/vms/tune", {"labels": {"c": "3"}})["labels"], {"c": "3"})

    def test_list_filters(self):
        k = self.kilnd
        k.create("f1", memory_mib=128, labels={"team": "a"})
        k.create("f2", memory_mib=128, labels={"team": "b"})
        names = lambda query: sorted(vm["name"] for vm in k.ok("GET", "/v1/vms?" + query))
        self.assertEqual(names("label=team=a"), ["f1"])
        self.assertEqual(names("label=team"), ["f1", "f2"])
        self.assertEqual(names("state=stopped&name=2"), ["f2"])
        self.assertError(k.request("GET", "/v1/vms?state=sleepy"), 400, "sleepy")


class ConcurrencyTest(KilndTestCase):
    def test_parallel_creates(self):
        k = self.kilnd
        results = []
        lock = threading.Lock()

        def create(name):
            response = k.request("POST", "/v1/vms", {"name": name, "memory_mib": 64, "disk_mib": 64})
            with lock:
                results.append((name, response.status))

        threads = [threading.Thread(target=create, args=(f"vm{i}",)) for i in range(20)]
        threads += [threading.Thread(target=create, args=("same",)) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        distinct = [status for name, status in results if name != "same"]
        same = sorted(status for name, status in results if name == "same")
        self.assertEqual(distinct, [201] * 20)
        self.assertEqual(same, [201] + [409] * 19)
        self.assertEqual(len(k.names()), 21)


class RootSourceTest(KilndTestCase):
    def test_from_directory_and_tarball(self):
        k = self.kilnd
        tree = tempfile.mkdtemp(dir=k.dir)
        os.makedirs(f"{tree}/bin")
        os.symlink("/bin/busybox", f"{tree}/bin/sh")
        subprocess.run(["cp", "/bin/busybox", f"{tree}/bin/busybox"], check=True)
        os.symlink("busybox", f"{tree}/bin/cat")
        with open(f"{tree}/hello.txt", "w") as f:
            f.write("from the host tree\n")
        k.create("fromdir", memory_mib=128, source={"directory": tree})
        tarball = os.path.join(k.dir, "root.tar")
        with tarfile.open(tarball, "w") as tar:
            tar.add(tree, arcname=".")
        k.create("fromtar", memory_mib=128, source={"tarball": tarball})
        for name in ("fromdir", "fromtar"):
            k.ok("POST", f"/v1/vms/{name}/start")
            self.assertEqual(k.exec(name, ["/bin/cat", "/hello.txt"])[1], b"from the host tree\n")

    def test_from_an_image_in_the_store(self):
        k = self.kilnd
        from kilnd_fixtures import KILN
        tree = tempfile.mkdtemp(dir=k.dir)
        os.makedirs(f"{tree}/bin")
        subprocess.run(["cp", "/bin/busybox", f"{tree}/bin/busybox"], check=True)
        os.symlink("busybox", f"{tree}/bin/cat")
        with open(f"{tree}/marker", "w") as f:
            f.write("from the image\n")
        tarball = os.path.join(k.dir, "image.tar")
        with tarfile.open(tarball, "w") as tar:
            tar.add(tree, arcname=".")
        subprocess.run([KILN, "-H", "unix://" + k.socket, "image", "import", tarball, "localhost/mini:1"],
                       check=True, capture_output=True)
        vm = k.create("fromimage", memory_mib=128, image="localhost/mini:1")
        self.assertEqual(vm["source"], {"image": "localhost/mini:1"})
        k.ok("POST", "/v1/vms/fromimage/start")
        self.assertEqual(k.exec("fromimage", ["/bin/cat", "/marker"])[1], b"from the image\n")
        self.assertError(k.request("POST", "/v1/vms", {"name": "x", "image": "nosuch:1"}), 400, "no such image")
        self.assertEqual(k.names(), ["fromimage"])

    def test_hostile_tarball_is_refused(self):
        k = self.kilnd
        tarball = os.path.join(k.dir, "evil.tar")
        with tarfile.open(tarball, "w") as tar:
            info = tarfile.TarInfo("../../escape.txt")
            info.size = 4
            import io
            tar.addfile(info, io.BytesIO(b"evil"))
        self.assertError(k.request("POST", "/v1/vms", {"name": "evil", "source": {"tarball": tarball}}), 400,
                         "tarball")
        self.assertEqual(k.names(), [])
        self.assertFalse(os.path.exists(os.path.join(k.dir, "escape.txt")))

    def test_clone_from_a_stopped_vm(self):
        k = self.kilnd
        k.create("template", memory_mib=128)
        k.ok("POST", "/v1/vms/template/start")
        k.exec("template", ["sh", "-c", "echo golden > /etc/golden; sync"])
        self.assertError(k.request("POST", "/v1/vms", {"name": "c1", "source": {"vm": "template"}}), 409, "running")
        k.ok("POST", "/v1/vms/template/stop")
        k.create("c1", memory_mib=128, source={"vm": "template"})
        k.ok("POST", "/v1/vms/c1/start")
        self.assertEqual(k.exec("c1", ["cat", "/etc/golden"])[1], b"golden\n")


class SharedFolderTest(KilndTestCase):
    def test_shared_folders_read_write_and_read_only(self):
        k = self.kilnd
        rw = tempfile.mkdtemp(dir=k.dir)
        ro = tempfile.mkdtemp(dir=k.dir)
        with open(f"{rw}/in.txt", "w") as f:
            f.write("host says hi\n")
        with open(f"{ro}/ro.txt", "w") as f:
            f.write("read only\n")
        k.create("sharer", memory_mib=128, shared_folders=[
            {"host_path": rw, "guest_path": "/data"},
            {"host_path": ro, "guest_path": "docs", "read_only": True}])
        k.ok("POST", "/v1/vms/sharer/start")
        self.assertEqual(k.exec("sharer", ["cat", "/data/in.txt"])[1], b"host says hi\n")
        self.assertEqual(k.exec("sharer", ["sh", "-c", "echo guest > /data/out.txt"])[0], 0)
        with open(f"{rw}/out.txt") as f:
            self.assertEqual(f.read(), "guest\n")
        self.assertEqual(k.exec("sharer", ["cat", "/mnt/hgfs/docs/ro.txt"])[1], b"read only\n")
        self.assertNotEqual(k.exec("sharer", ["sh", "-c", "echo x > /mnt/hgfs/docs/new"])[0], 0)
        added = k.ok("POST", "/v1/vms/sharer/folders", {"host_path": rw, "guest_path": "later"}, status=201)
        self.assertFalse(added["applied"])
        self.assertIn("next start", added["note"])
        k.ok("POST", "/v1/vms/sharer/restart")
        self.assertEqual(k.exec("sharer", ["cat", "/mnt/hgfs/later/in.txt"])[1], b"host says hi\n")
        self.assertError(k.request("POST", "/v1/vms/sharer/folders", {"host_path": "/no/such", "guest_path": "x"}),
                         400, "not an existing directory")


class TemplateTest(KilndTestCase):
    """/v1/templates and `kiln template`: fork templates built ahead of need, listed, removed."""

    def kiln(self, *args):
        return subprocess.run([KILN, "-H", "unix://" + self.kilnd.socket, *args], capture_output=True, text=True,
                              timeout=300)

    def test_warm_list_and_remove(self):
        k = self.kilnd
        self.assertEqual(k.ok("GET", "/v1/templates"), [])
        made = k.ok("POST", "/v1/templates", {"memory_mib": 256})
        self.assertRegex(made["key"], "^[0-9a-f]{64}$")
        self.assertEqual((made["cpus"], made["memory_mib"], made["memory_bytes"], made["in_use"]),
                         (1, 256, 256 << 20, 0))
        manifest = json.load(open(os.path.join(k.root, "templates", made["key"], "snapshot.json")))
        self.assertEqual((manifest["role"], manifest["version"]), ("template", 2))
        # The same shape again: the template that exists, not a second one.
        self.assertEqual(k.ok("POST", "/v1/templates", {"memory_mib": 256})["key"], made["key"])
        self.assertEqual([t["key"] for t in k.ok("GET", "/v1/templates")], [made["key"]])
        # The CLI shows it and removes it by a prefix.
        listed = self.kiln("template", "ls")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn(made["key"][:12], listed.stdout)
        self.assertIn("256 MiB", listed.stdout)
        removed = self.kiln("template", "rm", made["key"][:12])
        self.assertEqual(removed.returncode, 0, removed.stderr)
        self.assertFalse(os.path.exists(os.path.join(k.root, "templates", made["key"])))
        self.assertEqual(k.ok("GET", "/v1/templates"), [])

    def test_bad_requests(self):
        k = self.kilnd
        self.assertError(k.request("POST", "/v1/templates", {"cpus": 0}), 400, "cpus")
        self.assertError(k.request("POST", "/v1/templates", {"memory": 256}), 400, "memory")
        self.assertError(k.request("POST", "/v1/templates", {"memory_mib": "big"}), 400, "memory_mib")
        self.assertError(k.request("DELETE", "/v1/templates/0123"), 404, "no template 0123")
        gone = self.kiln("template", "rm", "nothing")
        self.assertEqual(gone.returncode, 1)
        self.assertEqual(gone.stderr.strip(), "kiln: no template nothing")
        self.assertEqual(k.ok("GET", "/v1/templates"), [])

    def test_a_cold_booting_kilnd_has_no_templates(self):
        cold = Kilnd()
        self.addCleanup(cold.cleanup)
        cold.start(["--boot=cold"])
        self.assertError(cold.request("GET", "/v1/templates"), 409, "--boot=cold")


class MetaTest(KilndTestCase):
    def test_openapi_and_version(self):
        k = self.kilnd
        document = k.request("GET", "/v1/openapi.yaml")
        self.assertEqual(document.status, 200)
        self.assertIn(b"openapi: 3", document.body)
        with open(os.path.join(os.path.dirname(__file__), "../../docs/api/kiln-v1.yaml"), "rb") as f:
            self.assertEqual(document.body, f.read())
        self.assertEqual(k.ok("GET", "/v1/version")["api_version"], "v1")

    def test_tcp_listener_and_detach(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = Kilnd()
        self.addCleanup(other.cleanup)
        from kilnd_fixtures import KILND
        result = subprocess.run([KILND, "--root", other.root, "--run-dir", other.run_dir, "--detach",
                                 "-H", f"unix://{other.socket}", "-H", f"tcp://127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(other.run_dir, "kilnd.pid")) as f:
            pid = int(f.read())
        self.addCleanup(lambda: os.kill(pid, signal.SIGTERM))
        import http.client
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/v1/ping")
        self.assertEqual(connection.getresponse().status, 200)
        self.assertEqual(other.request("GET", "/v1/ping").status, 200)
        failed = subprocess.run([KILND, "--root", other.root, "--run-dir", other.run_dir + "x", "--detach"],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(failed.returncode, 1)
        self.assertIn("already running", failed.stderr)


if __name__ == "__main__":
    unittest.main()

"""Suspend on the fork machinery against a real kilnd (QEMU TCG): a cold-booted VM (its RAM a shared memfd) is
suspended into device state plus a sparse memory file, and restored by mapping that file private
(copy-on-write) instead of streaming it in: the same VM (hostname, machine id, uptime, tmpfs, unsynced disk
writes), whose resident memory after the restore is what its guest touched. Its RAM is then a private file
mapping, so its next suspend streams (the path every suspend took before), and the one after maps again. A
restored VM survives kill -9 of kilnd: the mapping of the consumed (unlinked) memory file keeps its pages.

Prints the figures docs/benchmarks.md quotes (suspend, restore-to-agent, resident memory) for both paths."""
import json
import os
import sys
import time
import unittest

from kilnd_fixtures import Kilnd
from vm_clone_test import smaps_of_file

MEMORY_MIB = 256


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SuspendIntoMemoryFileTest(unittest.TestCase):
    def setUp(self):
        self.kilnd = Kilnd()
        self.addCleanup(self.kilnd.cleanup)
        self.kilnd.start()

    def out(self, vm, cmd):
        code, out, err = self.kilnd.exec(vm, ["sh", "-c", cmd])
        self.assertEqual(code, 0, (cmd, out, err))
        return out.decode().strip()

    def suspend_dir(self, vm_id):
        return os.path.join(self.kilnd.root, "vms", vm_id, "suspend")

    def suspend_and_restore(self, name, expected_role):
        """Suspends and restores `name`, checks what was saved; returns the figures of the round."""
        k = self.kilnd
        vm_id = k.ok("GET", f"/v1/vms/{name}")["id"]
        started = time.monotonic()
        vm = k.ok("POST", f"/v1/vms/{name}/suspend")
        suspend_s = time.monotonic() - started
        self.assertEqual(vm["state"], "suspended")
        self.assertEqual(k.qemu_pids(), [])  # no monitor: the VM holds no host memory
        with open(os.path.join(self.suspend_dir(vm_id), "snapshot.json")) as manifest_file:
            manifest = json.load(manifest_file)
        self.assertEqual(manifest["role"], expected_role, manifest)
        saved_bytes = 0
        for entry in os.scandir(self.suspend_dir(vm_id)):
            saved_bytes += entry.stat().st_blocks * 512
        memory = os.path.join(self.suspend_dir(vm_id), "memory")
        if expected_role == "suspend-memory":
            # Sparse: the VM's RAM size, but only what the guest wrote takes disk space.
            self.assertEqual(os.stat(memory).st_size, MEMORY_MIB << 20)
            self.assertLess(os.stat(memory).st_blocks * 512, (MEMORY_MIB << 20) // 2)
        else:
            self.assertFalse(os.path.exists(memory))

        started = time.monotonic()
        vm = k.ok("POST", f"/v1/vms/{name}/start")
        restore_s = time.monotonic() - started
        self.assertEqual(vm["state"], "running")
        self.assertEqual(vm["start"]["mode"], "restore", vm)
        self.assertFalse(os.path.exists(self.suspend_dir(vm_id)))  # consumed
        return {"role": expected_role, "suspend_s": suspend_s, "restore_s": restore_s,
                "timings_ms": vm["start"]["timings_ms"], "saved_mib": saved_bytes / 2**20, "pid": vm["monitor_pid"]}

    def check_same_vm(self, name, token, machine_id, uptime_before):
        self.assertEqual(self.out(name, "cat /tmp/token"), token)
        self.assertEqual(self.out(name, "cat /root/disk-token"), token)
        uptime = float(self.out(name, "cut -d' ' -f1 /proc/uptime"))
        self.assertGreater(uptime, uptime_before)  # no second boot
        self.assertEqual(self.out(name, "hostname"), name)
        self.assertEqual(self.out(name, "cat /etc/machine-id 2>/dev/null; true"), machine_id)
        # Its clock was brought forward to the host's (it stood still while suspended).
        before = time.time()
        guest_now = int(self.out(name, "date +%s"))
        self.assertGreaterEqual(guest_now, int(before) - 2)
        self.assertLessEqual(guest_now, time.time() + 2)
        return uptime

    def test_suspend_maps_the_memory_file_on_restore(self):
        k = self.kilnd
        k.create("sleeper", memory_mib=MEMORY_MIB)
        k.ok("POST", "/v1/vms/sleeper/start")
        token = self.out("sleeper", "head -c8 /dev/urandom | od -An -tx1 | tr -d ' \\n'")
        # In RAM only (/tmp is tmpfs), and on the disk without a sync: the restored VM must have both.
        self.out("sleeper", f"echo {token} > /tmp/token; echo {token} > /root/disk-token")
        # A process of its own session that must live on.
        self.out("sleeper", "setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/pid")
        pid = self.out("sleeper", "cat /tmp/pid")
        machine_id = self.out("sleeper", "cat /etc/machine-id 2>/dev/null; true")
        uptime = float(self.out("sleeper", "cut -d' ' -f1 /proc/uptime"))
        booted_rss = rss_kib(k.ok("GET", "/v1/vms/sleeper")["monitor_pid"])

        mapped = self.suspend_and_restore("sleeper", "suspend-memory")
        uptime = self.check_same_vm("sleeper", token, machine_id, uptime)
        self.assertEqual(self.out("sleeper", f"kill -0 {pid} && echo alive"), "alive")
        # Its RAM maps the (unlinked) memory file private: what it owns is what its guest wrote since.
        ram = smaps_of_file(mapped["pid"], "/suspend/memory")
        self.assertIsNotNone(ram, "the restored VM's monitor does not map the suspended memory file")
        self.assertEqual(ram["Size"], MEMORY_MIB * 1024)
        self.assertLess(ram["Private_Dirty"], MEMORY_MIB * 1024 // 4, ram)
        mapped["ram"] = ram
        mapped["rss_kib"] = rss_kib(mapped["pid"])

        # kill -9 of kilnd: the restored VM runs on, and the next kilnd adopts it; its memory is intact.
        k.kill9()
        self.assertEqual(k.qemu_pids(), [mapped["pid"]])
        k.start()
        self.assertEqual(k.ok("GET", "/v1/vms/sleeper")["state"], "running")
        self.assertEqual(self.out("sleeper", "cat /tmp/token"), token)
        self.assertEqual(self.out("sleeper", "echo again > /tmp/again; cat /tmp/again"), "again")

        # Its RAM is a private file mapping now: the next suspend streams it (the earlier path), and the VM
        # then runs from a memfd again, so the one after maps once more.
        streamed = self.suspend_and_restore("sleeper", "suspend")
        uptime = self.check_same_vm("sleeper", token, machine_id, uptime)
        self.assertIsNone(smaps_of_file(streamed["pid"], "/suspend/memory"))
        streamed["rss_kib"] = rss_kib(streamed["pid"])
        again = self.suspend_and_restore("sleeper", "suspend-memory")
        self.check_same_vm("sleeper", token, machine_id, uptime)
        self.assertEqual(self.out("sleeper", "cat /tmp/again"), "again")
        self.assertEqual(self.out("sleeper", f"kill -0 {pid} && echo alive"), "alive")
        again["rss_kib"] = rss_kib(again["pid"])

        # A memory file that is not the VM's RAM size is refused before QEMU starts, with a message; the state
        # is moved aside and the next start boots from the disk (as after a power cut: what the guest had not
        # written back, such as /root/disk-token's data, was only in the discarded memory).
        self.suspend_and_restore("sleeper", "suspend")  # mapped, streamed, mapped, streamed: so the next maps
        vm_id = k.ok("GET", "/v1/vms/sleeper")["id"]
        k.ok("POST", "/v1/vms/sleeper/suspend")
        os.truncate(os.path.join(self.suspend_dir(vm_id), "memory"), 4096)
        refused = k.request("POST", "/v1/vms/sleeper/start")
        self.assertGreaterEqual(refused.status, 400, refused)
        message = refused.json()["message"]
        self.assertIn("memory", message)
        self.assertIn("damaged", message)
        self.assertIn("suspend.failed", message)
        self.assertEqual(k.qemu_pids(), [])
        self.assertTrue(os.path.isdir(self.suspend_dir(vm_id) + ".failed"))
        booted = k.ok("POST", "/v1/vms/sleeper/start")
        self.assertEqual(booted["start"]["mode"], "boot")
        self.assertEqual(self.out("sleeper", "hostname"), "sleeper")
        self.assertNotEqual(k.exec("sleeper", ["cat", "/tmp/token"])[0], 0)  # a fresh boot: tmpfs is empty

        print(f"\nbooted VM: QEMU RSS {booted_rss / 1024:.0f} MiB", file=sys.stderr)
        for figures in (mapped, streamed, again):
            print(f"{figures['role']}: suspend {figures['suspend_s'] * 1000:.0f} ms, saved "
                  f"{figures['saved_mib']:.1f} MiB on disk, restore to agent {figures['restore_s'] * 1000:.0f} ms "
                  f"{figures['timings_ms']}, QEMU RSS after restore {figures['rss_kib'] / 1024:.0f} MiB"
                  + (f", RAM mapping rss {figures['ram']['Rss'] / 1024:.1f} MiB private dirty "
                     f"{figures['ram']['Private_Dirty'] / 1024:.1f} MiB" if "ram" in figures else ""),
                  file=sys.stderr)


if __name__ == "__main__":
    unittest.main()

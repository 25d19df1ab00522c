"""Instant clone of a running VM against a real kilnd (QEMU TCG): POST /v1/vms/{id}/clone and `kiln vm clone`.
The clone runs on from the source's memory at the moment of the clone (tmpfs contents, unsynced disk
writes), gets its own hostname, machine id and RNG, maps the snapshot's memory file private (copy-on-write),
and the source keeps running. Refusals are Docker-style JSON errors with the right status."""
import os
import subprocess
import unittest

from kilnd_fixtures import KILN, KilndTestCase


def smaps_of_file(pid, fragment):
    """Size, Rss and Private_Dirty (KiB) of the mappings of `pid` whose path contains `fragment`."""
    totals = {"Size": 0, "Rss": 0, "Private_Dirty": 0}
    mapped = False
    with open(f"/proc/{pid}/smaps") as smaps:
        current = False
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                current = len(fields) >= 6 and fragment in " ".join(fields[5:])
                mapped = mapped or current
            elif current and fields and fields[0].rstrip(":") in totals:
                totals[fields[0].rstrip(":")] += int(fields[1])
    return totals if mapped else None


class InstantCloneTest(KilndTestCase):
    def run_kiln(self, *args):
        return subprocess.run([KILN, "-H", "unix://" + self.kilnd.socket, *args], capture_output=True, text=True,
                              timeout=300)

    def out(self, vm, cmd):
        code, out, err = self.kilnd.exec(vm, ["sh", "-c", cmd])
        self.assertEqual(code, 0, (cmd, out, err))
        return out.decode().strip()

    def test_running_vm_is_cloned_from_its_memory(self):
        k = self.kilnd
        k.create("origin", memory_mib=256)
        k.ok("POST", "/v1/vms/origin/start")
        token = self.out("origin", "head -c8 /dev/urandom | od -An -tx1 | tr -d ' \\n'")
        # In RAM only (/tmp is tmpfs), and on the disk without a sync: the clone must have both.
        self.out("origin", f"echo {token} > /tmp/token; echo {token} > /root/disk-token")
        origin_machine_id = self.out("origin", "cat /etc/machine-id 2>/dev/null; true")
        uptime_before = float(self.out("origin", "cut -d' ' -f1 /proc/uptime"))

        clone = k.ok("POST", "/v1/vms/origin/clone", {"name": "copy"}, status=201)
        self.assertEqual(clone["name"], "copy")
        self.assertEqual(clone["state"], "running")
        self.assertEqual(clone["start"]["mode"], "fork", clone)
        self.assertIn("snapshot", clone["start"]["timings_ms"])
        self.assertEqual(k.ok("GET", "/v1/vms/origin")["state"], "running")

        # Its memory is the source's: the tmpfs file and the unsynced disk write are there; no second boot.
        self.assertEqual(self.out("copy", "cat /tmp/token"), token)
        self.assertEqual(self.out("copy", "cat /root/disk-token"), token)
        # Its guest did not boot again: its uptime goes on from the source's.
        self.assertGreater(float(self.out("copy", "cut -d' ' -f1 /proc/uptime")), uptime_before)
        # Its own identity.
        self.assertEqual(self.out("copy", "hostname"), "copy")
        self.assertEqual(self.out("origin", "hostname"), "origin")
        copy_machine_id = self.out("copy", "cat /etc/machine-id")
        self.assertEqual(copy_machine_id, clone["id"][:32])
        self.assertNotEqual(copy_machine_id, origin_machine_id)
        draw = "head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'"
        self.assertNotEqual(self.out("copy", draw), self.out("origin", draw))
        uuid = "cat /proc/sys/kernel/random/uuid"
        self.assertNotEqual(self.out("copy", uuid), self.out("origin", uuid))
        # Its own address (the source's is gone from its eth0), and the two reach each other.
        origin_address = k.ok("GET", "/v1/vms/origin")["addresses"][0]
        copy_address = clone["addresses"][0]
        self.assertNotEqual(copy_address, origin_address)
        addresses = self.out("copy", "ip -4 addr show eth0")
        self.assertIn(f"inet {copy_address}/", addresses)
        self.assertNotIn(f"inet {origin_address}/", addresses)
        self.out("copy", f"ping -c1 -W5 {origin_address}")
        self.out("origin", f"ping -c1 -W5 {copy_address}")
        # Two VMs from here on: each reads what it wrote.
        self.out("origin", "echo origin-value > /tmp/own")
        self.out("copy", "echo copy-value > /tmp/own")
        self.assertEqual(self.out("origin", "cat /tmp/own"), "origin-value")
        self.assertEqual(self.out("copy", "cat /tmp/own"), "copy-value")
        self.assertEqual(self.out("origin", "cat /tmp/token"), token)

        # The clone maps the snapshot's memory file private: its own pages are few of its 256 MiB.
        copy = k.ok("GET", "/v1/vms/copy")
        mapped = smaps_of_file(copy["monitor_pid"], "/snapshot/memory")
        self.assertIsNotNone(mapped, "the clone's monitor does not map the snapshot's memory file")
        self.assertEqual(mapped["Size"], 256 * 1024)
        self.assertLess(mapped["Private_Dirty"], 128 * 1024, mapped)
        # Its names are gone (the mapping keeps the pages for as long as the clone runs).
        self.assertFalse(os.path.exists(os.path.join(k.root, "vms", copy["id"], "snapshot")))
        origin = k.ok("GET", "/v1/vms/origin")
        self.assertIsNone(smaps_of_file(origin["monitor_pid"], "/snapshot/memory"))

        # Both are ordinary VMs: each suspends and restores (the clone's RAM streams out of its private mapping).
        for name in ("copy", "origin"):
            self.assertEqual(k.ok("POST", f"/v1/vms/{name}/suspend")["state"], "suspended")
            self.assertEqual(k.ok("POST", f"/v1/vms/{name}/start")["state"], "running")
        self.assertEqual(self.out("copy", "cat /tmp/own"), "copy-value")
        self.assertEqual(self.out("origin", "cat /tmp/own"), "origin-value")

        # Its next start boots from its own disk: tmpfs is empty, the disk write is kept.
        k.ok("POST", "/v1/vms/copy/stop?timeout=30")
        restarted = k.ok("POST", "/v1/vms/copy/start")
        self.assertEqual(restarted["start"]["mode"], "boot")
        self.assertEqual(self.out("copy", "cat /root/disk-token"), token)
        self.assertNotEqual(k.exec("copy", ["cat", "/tmp/token"])[0], 0)
        self.assertEqual(k.request("DELETE", "/v1/vms/copy?force=1").status, 204)
        self.assertEqual(self.out("origin", "cat /tmp/own"), "origin-value")

        # The CLI: a stopped clone (only the disk, copied while the source was paused), then refusals.
        made = self.run_kiln("vm", "clone", "origin", "cold", "--no-start")
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertEqual(k.ok("GET", "/v1/vms/cold")["state"], "stopped")
        self.assertEqual(k.ok("GET", "/v1/vms/origin")["state"], "running")
        taken = self.run_kiln("vm", "clone", "origin", "cold")
        self.assertNotEqual(taken.returncode, 0)
        self.assertIn("cold", taken.stderr)

    def test_refusals(self):
        k = self.kilnd
        self.assertError(k.request("POST", "/v1/vms/nope/clone", {"name": "x"}), 404, "nope")
        k.create("origin", memory_mib=128)
        k.create("other", memory_mib=128)
        k.ok("POST", "/v1/vms/origin/start")
        self.assertError(k.request("POST", "/v1/vms/origin/clone", {"name": "other"}), 409, "other")
        self.assertError(k.request("POST", "/v1/vms/origin/clone", {"name": "x", "bogus": 1}), 400, "bogus")
        # A paused source is cloned too, and stays paused; a suspended one has no monitor to clone from.
        k.ok("POST", "/v1/vms/origin/pause")
        frozen = k.ok("POST", "/v1/vms/origin/clone", {"name": "frozen"}, status=201)
        self.assertEqual(frozen["state"], "running")
        self.assertEqual(k.ok("GET", "/v1/vms/origin")["state"], "paused")
        self.assertEqual(k.exec("frozen", ["hostname"])[1], b"frozen\n")
        self.assertEqual(k.request("DELETE", "/v1/vms/frozen?force=1").status, 204)
        k.ok("POST", "/v1/vms/origin/resume")
        k.ok("POST", "/v1/vms/origin/suspend")
        self.assertError(k.request("POST", "/v1/vms/origin/clone", {"name": "x"}), 409, "suspended")
        k.ok("POST", "/v1/vms/origin/start")
        # Restored from its memory file, its RAM maps that file private as a fork's does: refused until it boots.
        self.assertError(k.request("POST", "/v1/vms/origin/clone", {"name": "x"}), 409, "restored from a suspend")
        self.assertEqual(k.request("GET", "/v1/vms/x").status, 404)
        k.ok("POST", "/v1/vms/origin/restart")
        # A clone is a fork (its RAM maps its snapshot's file): it cannot be cloned while it runs.
        k.ok("POST", "/v1/vms/origin/clone", {"name": "copy"}, status=201)
        self.assertError(k.request("POST", "/v1/vms/copy/clone", {"name": "x"}), 409, "fork")
        self.assertEqual(k.request("GET", "/v1/vms/x").status, 404)
        self.assertEqual(sorted(os.listdir(os.path.join(k.root, "vms"))),
                         sorted(vm["id"] for vm in k.ok("GET", "/v1/vms")))
        self.assertEqual(k.ok("GET", "/v1/vms/copy")["state"], "running")
        self.assertEqual(k.ok("GET", "/v1/vms/origin")["state"], "running")
        # A clone needs nothing on disk but its own disk: kill -9 of kilnd loses neither VM.
        k.kill9()
        k.start()
        for name in ("origin", "copy"):
            self.assertEqual(k.ok("GET", f"/v1/vms/{name}")["state"], "running")
            self.assertEqual(k.exec(name, ["hostname"])[1], f"{name}\n".encode())
        # An adopted source (this kilnd did not start it) is cloned the same way.
        after = k.ok("POST", "/v1/vms/origin/clone", {"name": "after"}, status=201)
        self.assertEqual(after["start"]["mode"], "fork")
        self.assertEqual(k.exec("after", ["hostname"])[1], b"after\n")


if __name__ == "__main__":
    unittest.main()

"""VM fork through the docker CLI (issue 12): kilnd's container VMs start as copy-on-write clones of a booted
template under <root>/templates/<key>, unless kilnd runs with --boot=cold or the container has the label
kiln.boot=cold. What the Kiln VM API says (GET /v1/vms/{id}: start.mode, start.template) is checked against
what is on disk, and the clones are checked to be separate machines: their own randomness and hostnames,
and all of them kept (with their template) across a kill -9 of kilnd.

The kilnd, the busybox image and the docker helpers are container_cli_test's (ContainerCase)."""
import hashlib
import json
import os
import time
import unittest

from container_cli_test import IMAGE, ContainerCase, wait_until  # noqa: E402


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ForkCase(ContainerCase):
    kiln_only = True

    def vm_of(self, container):
        """The Kiln VM (GET /v1/vms/{id}) of a container, found by its label kiln.container.id."""
        container_id = self.inspect(container)["Id"]
        vms = [vm for vm in self.kilnd.ok("GET", "/v1/vms") if vm["labels"].get("kiln.container.id") == container_id]
        self.assertEqual(len(vms), 1, f"VMs of container {container_id[:12]}: {vms}")
        return self.kilnd.ok("GET", f"/v1/vms/{vms[0]['id']}")

    def templates_dir(self):
        return os.path.join(self.kilnd.root, "templates")

    def manifest(self, key):
        with open(os.path.join(self.templates_dir(), key, "snapshot.json")) as f:
            return json.load(f)


class ForkTest(ForkCase):
    kilnd_boot = "fork"  # kilnd's default, named so that KILN_TEST_BOOT=cold cannot turn these cases around

    def test_a_container_vm_is_forked_from_a_template_on_disk(self):
        self.docker("run", "-d", "--name", "forked", IMAGE, "sleep", "1000")
        vm = self.vm_of("forked")
        start = vm["start"]
        self.assertEqual(start["mode"], "fork", vm)
        key = start.get("template")
        self.assertTrue(key, vm)
        directory = os.path.join(self.templates_dir(), key)
        self.assertTrue(os.path.isdir(directory), f"{directory} missing; templates: "
                        f"{os.listdir(self.templates_dir()) if os.path.isdir(self.templates_dir()) else None}")
        manifest = self.manifest(key)
        self.assertEqual(manifest["role"], "template", manifest)
        self.assertEqual(manifest.get("template_key"), key, manifest)
        memory = os.path.join(directory, manifest["files"]["memory"]["name"])
        self.assertEqual(os.path.getsize(memory), manifest["files"]["memory"]["bytes"])
        # Every step of the fork is timed and shown.
        self.assertTrue(start.get("timings_ms"), vm)
        self.assertTrue(all(isinstance(ms, (int, float)) and ms >= 0 for ms in start["timings_ms"].values()), vm)
        # The clone is a working container.
        self.assertEqual(self.out("exec", "forked", "echo", "forked and alive"), "forked and alive")
        self.assertEqual(self.state("forked")["Status"], "running")
        # A second container forks from the same template (built once per kilnd root).
        self.docker("run", "-d", "--name", "second", IMAGE, "sleep", "1000")
        second = self.vm_of("second")["start"]
        self.assertEqual((second["mode"], second["template"]), ("fork", key), second)
        self.assertNotIn("template-build", second["timings_ms"], "the template was built a second time")
        self.assertEqual(os.listdir(self.templates_dir()), [key])

    def test_label_kiln_boot_cold_boots_that_container(self):
        self.docker("run", "-d", "--name", "cold", "--label", "kiln.boot=cold", IMAGE, "sleep", "1000")
        start = self.vm_of("cold")["start"]
        self.assertEqual(start["mode"], "boot", start)
        self.assertFalse(start.get("template"), start)
        self.assertEqual(self.out("exec", "cold", "echo", "booted"), "booted")
        # The label applies to that container only.
        self.docker("run", "-d", "--name", "warm", IMAGE, "sleep", "1000")
        self.assertEqual(self.vm_of("warm")["start"]["mode"], "fork")

    def test_two_clones_do_not_share_randomness_and_have_their_own_hostnames(self):
        # The image has no `od` link; /bin/busybox is there. Not --rm: the VMs are checked to be clones, then
        # removed.
        script = "head -c16 /dev/urandom | busybox od -An -tx1; cat /proc/sys/kernel/random/uuid; hostname"
        outputs = []
        for name in ("random-a", "random-b"):
            output = self.out("run", "--name", name, IMAGE, "sh", "-c", script)
            self.assertEqual(self.vm_of(name)["start"]["mode"], "fork")
            random_bytes, uuid, hostname = output.splitlines()
            self.assertEqual(len(random_bytes.split()), 16, output)
            self.assertRegex(uuid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
            # Docker's hostname: the short id.
            self.assertEqual(hostname, self.inspect(name)["Id"][:12])
            outputs.append((random_bytes, uuid, hostname))
        self.assertNotEqual(outputs[0][0], outputs[1][0], "two clones read the same /dev/urandom bytes")
        self.assertNotEqual(outputs[0][1], outputs[1][1], "two clones made the same random uuid")
        self.assertNotEqual(outputs[0][2], outputs[1][2])
        # And --rm as in the issue, with -h: the clone's hostname is the one asked for.
        first = self.out("run", "--rm", "-h", "clone-one", IMAGE, "sh", "-c", script).splitlines()
        second = self.out("run", "--rm", "-h", "clone-two", IMAGE, "sh", "-c", script).splitlines()
        self.assertEqual((first[2], second[2]), ("clone-one", "clone-two"))
        self.assertEqual(len({first[0], second[0], outputs[0][0], outputs[1][0]}), 4)
        self.assertEqual(len({first[1], second[1], outputs[0][1], outputs[1][1]}), 4)

    def test_kill_9_of_kilnd_with_ten_clones_loses_none_and_keeps_their_template(self):
        names = [f"tick-{i}" for i in range(10)]
        for name in names:
            self.docker("run", "-d", "--name", name, IMAGE, "sh", "-c", "while true; do date; sleep 1; done")
        keys = {self.vm_of(name)["start"]["template"] for name in names}
        self.assertEqual(len(keys), 1, keys)
        key = keys.pop()
        self.assertTrue(all(self.vm_of(name)["start"]["mode"] == "fork" for name in names))
        pids = {name: self.state(name)["Pid"] for name in names}
        for name in names:
            wait_until(lambda: self.docker("logs", name).stdout.strip(), f"a line in {name}'s log")
        lines_before = {name: len(self.docker("logs", name).stdout.splitlines()) for name in names}

        self.kilnd.kill9()
        time.sleep(1)  # the clones run on with nobody reading them
        self.kilnd.start()

        running = self.out("ps", "--format", "{{.Names}}").split()
        self.assertEqual(sorted(running), sorted(names), self.server_log())
        for name in names:
            state = self.state(name)
            self.assertEqual((state["Status"], state["Pid"]), ("running", pids[name]), name)
        # Their logs continue: each prints a line a second.
        for name in names:
            wait_until(lambda: len(self.docker("logs", name).stdout.splitlines()) >= lines_before[name] + 3,
                       f"{name}'s log to grow after the restart", timeout=60)
        # The template they map is still there, its memory file unchanged.
        directory = os.path.join(self.templates_dir(), key)
        self.assertTrue(os.path.isdir(directory), f"template {key} was removed while 10 clones map it")
        manifest = self.manifest(key)
        memory = manifest["files"]["memory"]
        self.assertEqual(file_sha256(os.path.join(directory, memory["name"])), memory["sha256"])
        self.assertEqual(self.vm_of(names[0])["start"]["template"], key)
        self.assertEqual(self.out("exec", names[-1], "echo", "still forked"), "still forked")
        removed = self.docker("rm", "-f", *names)
        self.assertEqual(removed.stdout.decode().split(), names)
        self.assertEqual(self.out("ps", "-aq"), "")


class WarmPoolTest(ForkCase):
    """The warm pool (kilnd --warm-pool, 2 by default): after a first start of a shape, kilnd keeps idle clones
    of it forked; the next starts take one each, and it is a full container (network, mounts, exec)."""
    kilnd_boot = "fork"

    def pooled_count(self):
        templates = self.kilnd.ok("GET", "/v1/templates")
        return sum(t.get("pooled", 0) for t in templates)

    def pool_qemus(self):
        """QEMU processes still running in a warm pool clone's directory (idle clones)."""
        pool = os.path.join(self.kilnd.run_dir, "pool") + "/"
        found = []
        for pid in self.kilnd.qemu_pids():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if (cwd + "/").startswith(pool):
                found.append(pid)
        return found

    def test_starts_take_warm_clones_that_are_whole_containers_and_none_outlive_kilnd(self):
        self.docker("run", "--rm", IMAGE, "true")  # the shape is learnt from this start
        wait_until(lambda: self.pooled_count() == 2, "two idle clones in the pool", timeout=120)
        self.assertEqual(len(self.pool_qemus()), 2)
        # Idle clones are no VMs and no containers.
        self.assertEqual(self.kilnd.ok("GET", "/v1/vms"), [])
        self.assertEqual(self.out("ps", "-aq"), "")

        host_dir = os.path.join(self.work, "pool-bind")
        os.makedirs(host_dir, exist_ok=True)
        with open(os.path.join(host_dir, "note"), "w") as f:
            f.write("from the host\n")
        self.docker("run", "-d", "--name", "pooled", "-v", f"{host_dir}:/data", IMAGE, "sleep", "1000")
        start = self.vm_of("pooled")["start"]
        self.assertEqual((start["mode"], start.get("pooled")), ("fork", True), f"{start}\n{self.server_log()}")
        self.assertIn("assign", start["timings_ms"], start)
        self.assertIn("pool-warm-up", start["timings_ms"], start)  # it ran a container workload first
        # Its own disks (the image's files, a writable layer), its host path, its address and name.
        self.assertEqual(self.out("exec", "pooled", "cat", "/data/note"), "from the host")
        self.out("exec", "pooled", "sh", "-c", "echo written > /data/back; echo layer > /root-file")
        with open(os.path.join(host_dir, "back")) as f:
            self.assertEqual(f.read(), "written\n")
        self.assertEqual(self.out("exec", "pooled", "cat", "/root-file"), "layer")
        self.assertEqual(self.out("exec", "pooled", "hostname"), self.inspect("pooled")["Id"][:12])
        address = self.inspect("pooled")["NetworkSettings"]["IPAddress"]
        self.assertTrue(address, self.inspect("pooled")["NetworkSettings"])
        self.assertIn(f"inet {address}/", self.out("exec", "pooled", "ip", "-4", "addr", "show", "eth0"))
        # Two pooled clones do not share randomness.
        self.docker("run", "-d", "--name", "pooled-2", IMAGE, "sleep", "1000")
        script = ["sh", "-c", "head -c16 /dev/urandom | busybox od -An -tx1"]
        self.assertNotEqual(self.out("exec", "pooled", *script), self.out("exec", "pooled-2", *script))
        # The pool refills.
        wait_until(lambda: self.pooled_count() == 2, "the pool to refill", timeout=120)

        # kill -9 of kilnd: the next one kills the idle clones it left and re-adopts the containers whose
        # VMs were clones (found by their moved directory).
        pid = self.state("pooled")["Pid"]
        self.kilnd.kill9()
        self.assertEqual(len(self.pool_qemus()), 2)
        self.kilnd.start()
        self.assertEqual(self.pool_qemus(), [])
        self.assertEqual((self.state("pooled")["Status"], self.state("pooled")["Pid"]), ("running", pid))
        self.assertEqual(self.out("exec", "pooled", "cat", "/data/note"), "from the host")
        self.docker("rm", "-f", "pooled", "pooled-2")
        # A stop of kilnd (SIGTERM) leaves no idle clone behind either.
        self.docker("run", "--rm", IMAGE, "true")
        wait_until(lambda: self.pooled_count() >= 1, "an idle clone", timeout=120)
        self.kilnd.stop()
        self.assertEqual(self.pool_qemus(), [])
        self.kilnd.start()


class ColdKilndTest(ForkCase):
    kilnd_boot = "cold"

    def test_kilnd_boot_cold_boots_containers_and_builds_no_template(self):
        self.docker("run", "-d", "--name", "booted", IMAGE, "sleep", "1000")
        start = self.vm_of("booted")["start"]
        self.assertEqual(start["mode"], "boot", start)
        self.assertFalse(start.get("template"), start)
        self.assertEqual(self.out("exec", "booted", "echo", "cold"), "cold")
        templates = self.templates_dir()
        self.assertEqual(os.listdir(templates) if os.path.isdir(templates) else [], [])


if __name__ == "__main__":
    unittest.main()

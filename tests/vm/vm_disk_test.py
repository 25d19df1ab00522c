"""`kiln vm run` with storage: booting into an ext4 root disk (--root-disk), extra disks (--disk), and host
directories shared over virtio-9p (-v). Real VMs under QEMU (TCG here); each case boots as few VMs as it can.
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm_run_test import KilnCase  # noqa: E402  (shared fixture: per-test TMPDIR and cache)

MARKER = "made by vm_disk_test\n"


def busybox_tree(root):
    """A minimal root filesystem: the host's static busybox, its applet links, and /etc/marker."""
    os.makedirs(os.path.join(root, "bin"))
    with open("/bin/busybox", "rb") as src, open(os.path.join(root, "bin/busybox"), "wb") as dst:
        dst.write(src.read())
    os.chmod(os.path.join(root, "bin/busybox"), 0o755)
    applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, check=True).stdout.decode()
    for applet in applets.split():
        path = os.path.join(root, applet)
        if os.path.lexists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink("/bin/busybox", path)
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc/marker"), "w") as f:
        f.write(MARKER)


class StorageCase(KilnCase):
    def make_root_disk(self, name="root.ext4"):
        tree = os.path.join(self.scratch.name, name + ".tree")
        busybox_tree(tree)
        image = os.path.join(self.scratch.name, name)
        subprocess.run(["mkfs.ext4", "-q", "-d", tree, "-F", image, "64M"], check=True, capture_output=True)
        return image

    def share(self, name, files=None):
        path = os.path.join(self.scratch.name, name)
        os.mkdir(path)
        for file, text in (files or {}).items():
            with open(os.path.join(path, file), "w") as f:
                f.write(text)
        return path

    def run_ok(self, *args):
        result = self.kiln("vm", "run", *args)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result.stdout.decode()

    def assertOneLineError(self, result):
        self.assertEqual(result.returncode, 125, result.stderr)
        err = result.stderr.decode().strip()
        self.assertEqual(len(err.splitlines()), 1, f"expected one line, got: {err!r}")
        self.assertTrue(err.startswith("kiln: "), err)
        return err


class RootDiskTest(StorageCase):
    def test_boots_into_the_root_disk_with_extra_disks_by_serial(self):
        root = self.make_root_disk()
        data = os.path.join(self.scratch.name, "data.img")
        with open(data, "wb") as f:
            f.truncate(1 << 20)
        out = self.run_ok("--root-disk", root, "--disk", data, "--",
                          "sh", "-c", "cat /etc/marker; grep ' / ' /proc/mounts; "
                          "for s in /sys/block/vd*/serial; do cat $s; echo; done | sort")
        lines = out.splitlines()
        self.assertEqual(lines[0] + "\n", MARKER)
        self.assertRegex(lines[1], r"^/dev/vd[a-z] / ext4 rw")
        self.assertEqual(lines[2:], ["kiln-disk0", "kiln-disk1"])
        self.assertNoLeftovers()

    def test_files_persist_and_the_disk_is_left_clean(self):
        root = self.make_root_disk()
        self.run_ok("--root-disk", root, "--", "sh", "-c", "mkdir -p /var/notes && echo kept > /var/notes/a")
        # A graceful stop remounts / read-only: no journal left to replay, nothing for fsck to repair.
        header = subprocess.run(["dumpe2fs", "-h", root], capture_output=True, check=True).stdout.decode()
        self.assertNotIn("needs_recovery", header)
        self.assertIn("Filesystem state:         clean", header)
        subprocess.run(["e2fsck", "-fn", root], capture_output=True, check=True)
        self.assertEqual(self.run_ok("--root-disk", root, "--", "cat", "/var/notes/a"), "kept\n")

    def test_garbage_root_disk_is_a_clear_error(self):
        garbage = os.path.join(self.scratch.name, "garbage.img")
        with open(garbage, "wb") as f:
            f.write(os.urandom(4 << 20))
        err = self.assertOneLineError(self.kiln("vm", "run", "--root-disk", garbage, "--", "true"))
        self.assertIn(f"--root-disk {garbage}: the VM could not boot from it: mount /dev/vd", err)
        self.assertNoLeftovers()

    def test_missing_disks_are_refused_before_booting(self):
        err = self.assertOneLineError(self.kiln("vm", "run", "--root-disk", "/nonexistent/root.ext4", "--", "true"))
        self.assertIn("--root-disk /nonexistent/root.ext4: No such file or directory", err)
        err = self.assertOneLineError(self.kiln("vm", "run", "--disk", self.scratch.name, "--", "true"))
        self.assertIn("not a regular file", err)
        self.assertNoLeftovers()


class VolumeTest(StorageCase):
    def test_read_write_volume(self):
        share = self.share("rw", {"in.txt": "from the host\n"})
        out = self.run_ok("-v", f"{share}:/data", "--", "sh", "-c", "cat /data/in.txt; echo from the guest > /data/out.txt")
        self.assertEqual(out, "from the host\n")
        with open(os.path.join(share, "out.txt")) as f:
            self.assertEqual(f.read(), "from the guest\n")

    def test_read_only_and_named_volumes(self):
        ro = self.share("ro", {"in.txt": "read me\n"})
        named = self.share("named", {"hello.txt": "by name\n"})
        script = ("cat /data/in.txt; if echo x > /data/new 2>/dev/null; then echo WROTE; else echo REFUSED; fi; "
                  "cat /mnt/hgfs/stuff/hello.txt")
        out = self.run_ok("-v", f"{ro}:/data:ro", "-v", f"{named}:stuff", "--", "sh", "-c", script)
        self.assertEqual(out, "read me\nREFUSED\nby name\n")
        self.assertFalse(os.path.exists(os.path.join(ro, "new")))

    def test_bad_volume_arguments(self):
        share = self.share("bad")
        for value in ["/nonexistent/dir:/data", f"{share}:rel/path", f"{share}:/a/../b", share, f"{share}:/x:rx",
                      f"{share}:/", f"{share}:..", f"{share}/in.txt:/x"]:
            with self.subTest(value=value):
                err = self.assertOneLineError(self.kiln("vm", "run", "-v", value, "--", "true"))
                self.assertIn("-v ", err)
        err = self.assertOneLineError(self.kiln("vm", "run", "-v", f"{share}:/x", "-v", f"{share}:/x", "--", "true"))
        self.assertIn("already a volume", err)
        self.assertNoLeftovers()


if __name__ == "__main__":
    unittest.main()

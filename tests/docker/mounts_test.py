"""Bind mounts, volumes and tmpfs (issue 14) through the real docker CLI: `-v`, `--mount`, `--tmpfs`, image
VOLUMEs, `docker rm -v`. Each container is a VM; host paths reach it over one 9p share whose entries QEMU
sees through bind mounts in a mount namespace of its own. The expectations are dockerd's (run with
KILN_DOCKER_ORACLE=unix:///path/dockerd.sock to check them against one; Kiln-only cases skip)."""
import json
import os
import shutil
import socket
import sys
import tempfile
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from container_cli_test import IMAGE, ContainerCase, wait_until  # noqa: E402


class MountCase(ContainerCase):
    def host_dir(self):
        # Under /tmp, not the class's work dir: the ownership checks need a directory anyone may enter.
        path = tempfile.mkdtemp(prefix="kiln-mounts-")
        os.chmod(path, 0o755)
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    def run_sh(self, script, *options, check=True):
        return self.docker("run", "--rm", *options, IMAGE, "sh", "-c", script, check=check)

    def volume_rm(self, *names):
        self.addCleanup(lambda: self.run_docker("volume", "rm", "-f", *names))


class BindMountTest(MountCase):
    def test_read_write_both_ways_with_owners_as_docker(self):
        data = self.host_dir()
        with open(os.path.join(data, "from-host"), "w") as f:
            f.write("hello from the host\n")
        os.mkdir(os.path.join(data, "shared"))
        os.chmod(os.path.join(data, "shared"), 0o777)
        out = self.run_sh("cat /data/from-host && echo written > /data/from-ctr && mkdir /data/dir && "
                          "ln -s from-ctr /data/link && mv /data/from-ctr /data/dir/moved && "
                          "ln /data/dir/moved /data/hard && stat -c %h /data/hard", "-v", f"{data}:/data")
        self.assertEqual(out.stdout.decode(), "hello from the host\n2\n")
        moved = os.path.join(data, "dir", "moved")
        with open(moved) as f:
            self.assertEqual(f.read(), "written\n")
        self.assertEqual(os.readlink(os.path.join(data, "link")), "from-ctr")
        self.assertEqual(os.stat(moved).st_ino, os.stat(os.path.join(data, "hard")).st_ino)
        # Root in the container writes root-owned files; uid 1000 writes files owned by 1000.
        self.assertEqual((os.stat(moved).st_uid, os.stat(moved).st_gid), (0, 0))
        self.run_sh("echo mine > /data/shared/by-app", "-u", "1000:1000", "-v", f"{data}:/data")
        by_app = os.stat(os.path.join(data, "shared", "by-app"))
        self.assertEqual((by_app.st_uid, by_app.st_gid), (1000, 1000))
        # A large file arrives whole.
        self.run_sh("head -c 3000000 /dev/zero > /data/big", "-v", f"{data}:/data")
        self.assertEqual(os.path.getsize(os.path.join(data, "big")), 3000000)

    def test_read_only_is_enforced_and_the_host_unchanged(self):
        data = self.host_dir()
        with open(os.path.join(data, "kept"), "w") as f:
            f.write("kept\n")
        for spec in ([ "-v", f"{data}:/data:ro"], ["--mount", f"type=bind,source={data},target=/data,readonly"]):
            with self.subTest(spec=spec[0]):
                out = self.run_sh("cat /data/kept; echo x > /data/kept || echo refused; touch /data/new || "
                                  "echo refused", *spec)
                self.assertEqual(out.stdout.decode(), "kept\nrefused\nrefused\n")
                self.assertEqual(sorted(os.listdir(data)), ["kept"])
                with open(os.path.join(data, "kept")) as f:
                    self.assertEqual(f.read(), "kept\n")

    def test_a_single_file(self):
        data = self.host_dir()
        conf = os.path.join(data, "app.conf")
        with open(conf, "w") as f:
            f.write("setting=1\n")
        out = self.run_sh("cat /etc/app.conf; ls /etc/app.conf.d 2>/dev/null; echo done", "-v",
                          f"{conf}:/etc/app.conf:ro")
        self.assertEqual(out.stdout.decode(), "setting=1\ndone\n")

    def test_symlink_swap_and_dot_dot_stay_inside_the_share(self):
        data = self.host_dir()
        os.mkdir(os.path.join(data, "sub"))
        marker = f"kiln-escape-{uuid.uuid4().hex}"
        # The container swaps a directory of the share for a link to / and writes through it, and climbs out
        # with "..": all of it happens inside the container, never in the host's own directories.
        self.run_sh(f"rm -rf /data/sub && ln -s / /data/sub && echo x > /data/sub/tmp/{marker}; "
                    f"echo y > /data/../../tmp/{marker}-dotdot; ln -s /etc /data/etc-link; "
                    f"echo z > /data/etc-link/{marker} || true", "-v", f"{data}:/data")
        for path in (f"/tmp/{marker}", f"/tmp/{marker}-dotdot", f"/etc/{marker}"):
            self.assertFalse(os.path.exists(path), path)
        self.assertEqual(os.readlink(os.path.join(data, "sub")), "/")

    def test_missing_sources_as_dockerd(self):
        made = os.path.join(self.host_dir(), "made", "by-run")
        self.run_sh("touch /x/file", "-v", f"{made}:/x")  # -v makes a missing host directory
        self.assertTrue(os.path.isfile(os.path.join(made, "file")))
        missing = os.path.join(self.host_dir(), "missing")
        refused = self.docker("run", "--rm", "--mount", f"type=bind,source={missing},target=/x", IMAGE, "true",
                              check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn(f"invalid mount config for type \"bind\": bind source path does not exist: {missing}",
                      refused.stderr.decode())
        self.assertFalse(os.path.exists(missing))

    def test_a_socket_cannot_be_shared_into_a_vm(self):
        if not self.kilnd:
            self.skipTest("dockerd shares the host's kernel, so it can bind a socket")
        socket_path = os.path.join(self.host_dir(), "app.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(socket_path)
        self.addCleanup(listener.close)
        refused = self.docker("create", "-v", f"{socket_path}:/run/app.sock", IMAGE, "true", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn(f"cannot bind-mount {socket_path} into a Kiln container: it is a socket", refused.stderr.decode())
        self.assertEqual(self.out("ps", "-aq"), "")

    def test_inspect_shows_the_mounts(self):
        data = self.host_dir()
        self.docker("create", "--name", "inspected", "-v", f"{data}:/data:ro", "--mount",
                    f"type=bind,source={data},target=/other", "--tmpfs", "/run", IMAGE, "true")
        mounts = sorted(self.inspect("inspected")["Mounts"], key=lambda m: m["Destination"])
        self.assertEqual(mounts, [
            {"Type": "bind", "Source": data, "Destination": "/data", "Mode": "ro", "RW": False,
             "Propagation": "rprivate"},
            {"Type": "bind", "Source": data, "Destination": "/other", "Mode": "", "RW": True,
             "Propagation": "rprivate"}])
        self.assertEqual(self.inspect("inspected")["HostConfig"]["Tmpfs"], {"/run": ""})

    def test_bad_specs_are_refused_with_dockerds_words(self):
        data = self.host_dir()
        cases = [
            (["-v", f"{data}:relative"], f"invalid volume specification: '{data}:relative'"),
            (["-v", f"{data}:/x:bogus"], "invalid mode: bogus"),
            (["-v", f"{data}:/x", "-v", f"{data}:/x/:ro"], "Duplicate mount point: /x"),
            (["-v", f"{data}:/"], "destination can't be '/'"),
            (["--mount", "type=tmpfs,source=x,target=/t"], "field Source must not be specified"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                refused = self.docker("create", *args, IMAGE, "true", check=False)
                self.assertNotEqual(refused.returncode, 0)
                self.assertIn(message, refused.stderr.decode())
        self.assertEqual(self.out("ps", "-aq"), "")  # nothing half-created


class VolumeMountTest(MountCase):
    def test_a_named_volume_outlives_its_containers(self):
        self.volume_rm("kiln-data")
        self.run_sh("echo persisted > /data/file && chown 1000:1000 /data/file", "-v", "kiln-data:/data")
        out = self.run_sh("cat /srv/file && stat -c %u /srv/file", "--mount",
                          "type=volume,source=kiln-data,target=/srv")
        self.assertEqual(out.stdout.decode(), "persisted\n1000\n")
        volume = json.loads(self.out("volume", "inspect", "kiln-data"))[0]
        self.assertEqual((volume["Name"], volume["Driver"]), ("kiln-data", "local"))
        if self.kilnd:
            with open(os.path.join(volume["Mountpoint"], "file")) as f:
                self.assertEqual(f.read(), "persisted\n")

    def test_an_empty_volume_is_filled_from_the_image_once(self):
        self.volume_rm("kiln-etc")
        out = self.run_sh("cat /etc/group | head -1; echo added > /etc/added", "-v", "kiln-etc:/etc")
        self.assertEqual(out.stdout.decode(), "root:x:0:\n")
        # Not empty any more: no second copy over what the first container wrote.
        out = self.run_sh("cat /etc/added; ls /etc | wc -l", "-v", "kiln-etc:/etc")
        lines = out.stdout.decode().split()
        self.assertEqual(lines[0], "added")
        # nocopy leaves a fresh volume empty.
        self.volume_rm("kiln-empty", "kiln-home")
        out = self.run_sh("ls -A /home", "-v", "kiln-empty:/home:nocopy")
        self.assertEqual(out.stdout.decode(), "")
        out = self.run_sh("ls -A /home; stat -c %u /home/app", "-v", "kiln-home:/home")
        self.assertEqual(out.stdout.decode(), "app\n1000\n")

    def test_an_image_volume_is_an_anonymous_volume_filled_from_the_image(self):
        self.docker("create", "--name", "volume-source", IMAGE, "true")
        self.addCleanup(lambda: self.run_docker("rm", "volume-source"))
        self.docker("commit", "--change", "VOLUME /home", "volume-source", "kiln-volume-image:1")
        self.addCleanup(lambda: self.run_docker("rmi", "kiln-volume-image:1"))
        out = self.out("run", "--name", "image-volume", "kiln-volume-image:1", "sh", "-c",
                       "ls /home; stat -c %u /home/app; touch /home/new")
        self.assertEqual(out.split(), ["app", "1000"])
        mounts = self.inspect("image-volume")["Mounts"]
        self.assertEqual([(m["Type"], m["Destination"], m["Mode"], len(m["Name"])) for m in mounts],
                         [("volume", "/home", "", 64)])
        self.assertEqual(self.inspect("image-volume")["Config"]["Volumes"], {"/home": {}})
        self.docker("rm", "-v", "image-volume")
        self.assertNotIn(mounts[0]["Name"], self.out("volume", "ls", "-q").split())

    def test_anonymous_volumes_go_with_rm_v(self):
        self.docker("run", "--name", "anon", "-v", "/scratch", IMAGE, "sh", "-c", "echo x > /scratch/f")
        mounts = self.inspect("anon")["Mounts"]
        self.assertEqual(len(mounts), 1)
        self.assertEqual((mounts[0]["Type"], mounts[0]["Destination"], len(mounts[0]["Name"])), ("volume", "/scratch", 64))
        name = mounts[0]["Name"]
        self.assertIn(name, self.out("volume", "ls", "-q").split())
        self.assertNotEqual(self.docker("volume", "rm", name, check=False).returncode, 0)  # in use
        self.docker("rm", "-v", "anon")
        self.assertNotIn(name, self.out("volume", "ls", "-q").split())

    def test_inspect_shows_volumes_as_dockerd(self):
        self.volume_rm("kiln-named", "kiln-named2")
        self.docker("create", "--name", "vols", "-v", "kiln-named:/a", "-v", "/anon", "--mount",
                    "type=volume,source=kiln-named2,target=/b", "--mount", "type=tmpfs,target=/t,tmpfs-size=1024",
                    IMAGE, "true")
        self.addCleanup(lambda: self.run_docker("rm", "-v", "vols"))
        mounts = {m["Destination"]: m for m in self.inspect("vols")["Mounts"]}
        volumes_dir = os.path.dirname(os.path.dirname(mounts["/a"]["Source"]))
        self.assertEqual(mounts["/a"], {"Type": "volume", "Name": "kiln-named", "Driver": "local", "Mode": "z",
                                        "Source": f"{volumes_dir}/kiln-named/_data", "Destination": "/a",
                                        "RW": True, "Propagation": ""})
        self.assertEqual(mounts["/b"]["Mode"], "z")
        self.assertEqual((mounts["/anon"]["Mode"], len(mounts["/anon"]["Name"])), ("", 64))
        self.assertEqual(mounts["/t"], {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True,
                                        "Propagation": ""})
        self.assertEqual(self.inspect("vols")["Config"]["Volumes"], {"/anon": {}})

    def test_cp_reaches_a_volume_of_a_container_that_never_ran(self):
        self.volume_rm("kiln-cp")
        self.docker("create", "--name", "cp-vol", "-v", "kiln-cp:/data", IMAGE, "true")
        self.addCleanup(lambda: self.run_docker("rm", "cp-vol"))
        source = os.path.join(self.host_dir(), "note")
        with open(source, "w") as f:
            f.write("copied in\n")
        self.docker("cp", source, "cp-vol:/data/note")
        out = self.run_sh("cat /data/note", "-v", "kiln-cp:/data")
        self.assertEqual(out.stdout.decode(), "copied in\n")

    def test_diff_does_not_show_what_lives_in_mounts(self):
        self.volume_rm("kiln-diff")
        data = self.host_dir()
        self.docker("run", "--name", "diffed", "-v", "kiln-diff:/vol", "-v", f"{data}:/bind", "--tmpfs", "/tmpfs",
                    IMAGE, "sh", "-c", "echo a > /vol/a; echo b > /bind/b; echo c > /tmpfs/c; echo d > /root/d")
        self.addCleanup(lambda: self.run_docker("rm", "diffed"))
        changes = sorted(self.out("diff", "diffed").splitlines())
        self.assertEqual(changes, ["A /bind", "A /root/d", "A /tmpfs", "A /vol", "C /root"])

    def test_mount_labels_label_the_volume_it_creates(self):
        self.volume_rm("kiln-labelled")
        self.docker("create", "--name", "labelled", "--mount",
                    "type=volume,source=kiln-labelled,target=/x,volume-label=team=a", IMAGE, "true")
        self.addCleanup(lambda: self.run_docker("rm", "labelled"))
        volume = json.loads(self.out("volume", "inspect", "kiln-labelled"))[0]
        self.assertEqual(volume["Labels"], {"team": "a"})

    def test_bad_volume_name(self):
        refused = self.docker("run", "--rm", "-v", "bad/name:/x", IMAGE, "true", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("includes invalid characters for a local volume name", refused.stderr.decode())
        self.assertEqual(self.out("ps", "-aq"), "")


class MountsAcrossKilndTest(MountCase):
    kiln_only = True

    def test_a_forked_container_keeps_writing_to_its_mounts_across_kill_9_of_kilnd(self):
        data = self.host_dir()
        self.volume_rm("kiln-ticks")
        self.docker("run", "-d", "--name", "ticker", "-v", f"{data}:/data", "-v", "kiln-ticks:/vol", IMAGE, "sh",
                    "-c", "while true; do date >> /data/ticks; date >> /vol/ticks; sleep 0.2; done")
        container = self.inspect("ticker")["Id"]
        vm = [v for v in self.kilnd.ok("GET", "/v1/vms") if v["labels"].get("kiln.container.id") == container][0]
        mode = self.kilnd.ok("GET", f"/v1/vms/{vm['id']}")["start"]["mode"]
        self.assertEqual(mode, "fork")  # mounts do not keep a container from forking
        volume_file = os.path.join(json.loads(self.out("volume", "inspect", "kiln-ticks"))[0]["Mountpoint"], "ticks")
        wait_until(lambda: os.path.exists(os.path.join(data, "ticks")) and os.path.exists(volume_file), "ticks")
        self.kilnd.kill9()
        before = [os.path.getsize(os.path.join(data, "ticks")), os.path.getsize(volume_file)]
        wait_until(lambda: os.path.getsize(os.path.join(data, "ticks")) > before[0] and
                   os.path.getsize(volume_file) > before[1], "writes while kilnd is gone", timeout=30)
        self.kilnd.start()
        self.assertEqual(self.state("ticker")["Status"], "running", self.server_log())
        self.docker("rm", "-f", "ticker")
        # Nothing of the container's mounts is left in the host's mount table.
        with open("/proc/self/mounts") as mounts:
            self.assertNotIn(data, mounts.read())


class TmpfsTest(MountCase):
    def test_tmpfs_with_size_and_docker_defaults(self):
        out = self.run_sh("grep ' /run ' /proc/mounts; head -c 2000000 /dev/zero > /run/big 2>/dev/null || "
                          "echo full; rm /run/big; echo ok > /run/small && cat /run/small",
                          "--tmpfs", "/run:size=1m")
        lines = out.stdout.decode().splitlines()
        self.assertRegex(lines[0], r"^tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k")
        self.assertEqual(lines[1:], ["full", "ok"])
        out = self.run_sh("grep ' /cache ' /proc/mounts", "--mount",
                          "type=tmpfs,target=/cache,tmpfs-size=2097152,tmpfs-mode=1770")
        self.assertRegex(out.stdout.decode(), r"size=2048k,mode=1770")


if __name__ == "__main__":
    unittest.main()

"""A container's files through the Docker API on kilnd: `docker cp` both ways (a file, a directory, a symlink;
into and out of stopped and running containers), hostile archives, `docker export` and `docker diff`, with the
real docker CLI and raw API requests. Kiln does the work with the guest agent's own builtins, so the busybox
image here has no tar. Every operation on a stopped container starts its VM for a moment: the cases keep those
few.

With KILN_DOCKER_ORACLE=unix:///path/to/dockerd.sock the same cases run against that dockerd: the expected
answers below are what dockerd 20.10 gives."""
import base64
import io
import json
import os
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from container_cli_test import ContainerCase, wait_until  # noqa: E402
from kilnd_fixtures import UnixConnection  # noqa: E402

# What the container in the diff case does, and what dockerd's `docker diff` lists for it (in any order).
DIFF_SCRIPT = ("echo hi > /newfile; mkdir -p /d/e; echo x >> /etc/passwd; rm /bin/ls; rm -rf /home; mkdir /home; "
               "touch /home/z; echo t > /tmp/t; rm /tmp/t")
DIFF_EXPECTED = sorted(["C /bin", "D /bin/ls", "A /d", "A /d/e", "C /etc", "C /etc/passwd", "C /home", "A /home/z",
                        "D /home/app", "A /newfile"])


def tar_of(*members):
    """A tar built from (name, kind, data) triples; kind is 'file', 'dir' or 'symlink' (data is the target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FilesTest(ContainerCase):
    def request(self, method, path, body=None):
        """(status, headers, body bytes) of one request on the Docker socket."""
        connection = UnixConnection(self.docker_socket, timeout=120)
        headers = {"Content-Type": "application/x-tar"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, response.headers, data

    def message(self, data):
        return json.loads(data)["message"]

    def host_tree(self):
        """A host directory with a file, a directory holding a file and a symlink, and a symlink."""
        root = tempfile.mkdtemp(dir=self.work)
        with open(os.path.join(root, "file.txt"), "w") as f:
            f.write("file from the host\n")
        os.makedirs(os.path.join(root, "dir", "sub"))
        with open(os.path.join(root, "dir", "sub", "inner.txt"), "w") as f:
            f.write("inner\n")
        os.symlink("sub/inner.txt", os.path.join(root, "dir", "inner-link"))
        os.symlink("/etc/passwd", os.path.join(root, "link"))
        return root

    def test_cp_out_of_a_stopped_container(self):
        source = self.host_tree()
        self.docker("create", "--name", "cp-out", "busybox", "sh", "-c",
                    "mkdir -p /dst/dir/sub; echo inner > /dst/dir/sub/inner.txt; ln -s sub/inner.txt "
                    "/dst/dir/inner-link; echo file > /dst/file.txt; ln -s /etc/passwd /dst/link")
        self.docker("cp", os.path.join(source, "file.txt"), "cp-out:/tmp/in.txt")
        self.docker("start", "-a", "cp-out")
        self.assertEqual(self.state("cp-out")["Status"], "exited")
        exits = self.state("cp-out")["FinishedAt"]
        out = tempfile.mkdtemp(dir=self.work)
        self.docker("cp", "cp-out:/dst/file.txt", out)
        self.docker("cp", "cp-out:/dst/dir", out)
        self.docker("cp", "cp-out:/dst/link", out)
        self.docker("cp", "cp-out:/tmp/in.txt", out)
        with open(os.path.join(out, "file.txt")) as f:
            self.assertEqual(f.read(), "file\n")
        with open(os.path.join(out, "in.txt")) as f:
            self.assertEqual(f.read(), "file from the host\n")
        with open(os.path.join(out, "dir", "sub", "inner.txt")) as f:
            self.assertEqual(f.read(), "inner\n")
        self.assertEqual(os.readlink(os.path.join(out, "dir", "inner-link")), "sub/inner.txt")
        self.assertEqual(os.readlink(os.path.join(out, "link")), "/etc/passwd")
        # Reading the files of a stopped container is no run of it.
        state = self.state("cp-out")
        self.assertEqual((state["Status"], state["FinishedAt"], state["ExitCode"]), ("exited", exits, 0))

    def test_cp_into_a_never_started_container(self):
        source = self.host_tree()
        self.docker("create", "--name", "cp-seen", "busybox", "sh", "-c",
                    "cat /tmp/file.txt /tmp/dir/inner-link /tmp/dir/sub/inner.txt; readlink /tmp/link")
        self.docker("cp", os.path.join(source, "dir"), "cp-seen:/tmp/")
        self.docker("cp", os.path.join(source, "file.txt"), "cp-seen:/tmp/file.txt")
        self.docker("cp", os.path.join(source, "link"), "cp-seen:/tmp/link")
        out = self.docker("start", "-a", "cp-seen").stdout.decode()
        self.assertEqual(out, "file from the host\ninner\ninner\n/etc/passwd\n")

    def test_cp_both_ways_with_a_running_container(self):
        source = self.host_tree()
        self.docker("run", "-d", "--name", "cp-running", "busybox", "sleep", "1000")
        self.docker("cp", os.path.join(source, "file.txt"), "cp-running:/root/")
        self.assertEqual(self.out("exec", "cp-running", "cat", "/root/file.txt"), "file from the host")
        self.docker("exec", "cp-running", "sh", "-c", "echo from the container > /root/back.txt")
        status, headers, data = self.request("GET", "/containers/cp-running/archive?path=/root/back.txt")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/x-tar")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.assertEqual(tar.getnames(), ["back.txt"])
            self.assertEqual(tar.extractfile("back.txt").read(), b"from the container\n")
        stat = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
        self.assertEqual((stat["name"], stat["size"], stat["mode"], stat["linkTarget"]), ("back.txt", 19, 0o644, ""))

    def test_stat_of_a_symlink_and_a_directory(self):
        self.docker("run", "-d", "--name", "cp-stat", "busybox", "sleep", "1000")
        status, headers, _ = self.request("HEAD", "/containers/cp-stat/archive?path=/bin/sh")
        self.assertEqual(status, 200)
        stat = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
        self.assertEqual((stat["name"], stat["size"], stat["mode"], stat["linkTarget"]),
                         ("sh", 7, (1 << 27) | 0o777, "/bin/busybox"))
        status, headers, _ = self.request("HEAD", "/containers/cp-stat/archive?path=/etc/")
        stat = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
        self.assertEqual((stat["name"], stat["mode"]), ("etc", (1 << 31) | 0o755))

    def test_errors_are_dockerds(self):
        self.docker("create", "--name", "cp-errors", "busybox", "true")
        status, _, data = self.request("GET", "/containers/cp-nope/archive?path=/etc")
        self.assertEqual((status, self.message(data)), (404, "No such container: cp-nope"))
        status, _, data = self.request("GET", "/containers/cp-errors/archive")
        self.assertEqual((status, self.message(data)), (400, "bad parameter: pathcannot be empty"))
        status, _, data = self.request("GET", "/containers/cp-errors/archive?path=/nope")
        self.assertEqual((status, self.message(data)), (404, "Could not find the file /nope in container cp-errors"))
        archive = tar_of(("x.txt", "file", b"x"))
        status, _, data = self.request("PUT", "/containers/cp-errors/archive?path=/nope", archive)
        self.assertEqual((status, self.message(data)), (404, "Could not find the file /nope in container cp-errors"))
        status, _, data = self.request("PUT", "/containers/cp-errors/archive?path=/etc/passwd", archive)
        self.assertEqual((status, self.message(data)), (500, "extraction point is not a directory"))
        status, _, data = self.request("GET", "/containers/cp-nope/changes")
        self.assertEqual((status, self.message(data)), (404, "No such container: cp-nope"))
        status, _, data = self.request("GET", "/containers/cp-nope/export")
        self.assertEqual(status, 404)

    def test_read_only_container_refuses_copies_in(self):
        self.docker("create", "--read-only", "--name", "cp-ro", "busybox", "true")
        status, _, data = self.request("PUT", "/containers/cp-ro/archive?path=/tmp", tar_of(("x", "file", b"x")))
        self.assertEqual((status, self.message(data)), (500, "container rootfs is marked read-only"))

    def test_archive_with_parent_entries_is_refused_and_writes_nothing_outside(self):
        self.docker("run", "-d", "--name", "cp-evil", "busybox", "sh", "-c", "mkdir -p /a/b; exec sleep 1000")
        # `run -d` returns once the process started, maybe before its mkdir ran.
        wait_until(lambda: self.docker("exec", "cp-evil", "test", "-d", "/a/b", check=False).returncode == 0,
                   "/a/b in cp-evil")
        evil = tar_of(("ok.txt", "file", b"ok"), ("../../escaped.txt", "file", b"evil"))
        status, _, data = self.request("PUT", "/containers/cp-evil/archive?path=/a/b", evil)
        self.assertEqual(status, 500)
        self.assertEqual(self.message(data),
                         'Error processing tar file(exit status 1): "../../escaped.txt" is outside of "/a/b"')
        hop = tar_of(("sub", "dir", None), ("sub/../../up.txt", "file", b"evil"))
        status, _, data = self.request("PUT", "/containers/cp-evil/archive?path=/a/b", hop)
        self.assertEqual(status, 500)
        self.assertIn("is outside of", self.message(data))
        listing = self.out("exec", "cp-evil", "sh", "-c", "ls /a /a/b /; test ! -e /escaped.txt && echo none")
        self.assertNotIn("escaped.txt", listing)
        self.assertNotIn("up.txt", listing)
        self.assertTrue(listing.endswith("none"))
        # An absolute name lands inside the destination, as dockerd puts it.
        status, _, _ = self.request("PUT", "/containers/cp-evil/archive?path=/a/b", tar_of(("/abs.txt", "file", b"a")))
        self.assertEqual(status, 200)
        self.assertEqual(self.out("exec", "cp-evil", "cat", "/a/b/abs.txt"), "a")

    def test_export_and_diff_of_a_stopped_container(self):
        self.docker("run", "--name", "cp-diff", "busybox", "sh", "-c", DIFF_SCRIPT)
        lines = sorted(self.out("diff", "cp-diff").splitlines())
        self.assertEqual(lines, DIFF_EXPECTED)
        exported = self.docker("export", "cp-diff").stdout
        with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
            names = tar.getnames()
            self.assertIn("newfile", names)
            self.assertIn("d/e", names)
            self.assertIn("bin/busybox", names)
            self.assertNotIn("bin/ls", names)
            self.assertNotIn("home/app", names)
            self.assertEqual(tar.extractfile("newfile").read(), b"hi\n")
            self.assertTrue(tar.extractfile("etc/passwd").read().endswith(b"x\n"))
            self.assertTrue(tar.getmember("bin/sh").issym())
        status, _, data = self.request("GET", "/containers/cp-diff/changes")
        self.assertEqual(status, 200)
        kinds = {change["Path"]: change["Kind"] for change in json.loads(data)}
        self.assertEqual((kinds["/newfile"], kinds["/etc/passwd"], kinds["/bin/ls"]), (1, 0, 2))

    def test_commit_then_run_the_new_image(self):
        self.docker("run", "--name", "cp-commit", "busybox", "sh", "-c",
                    "echo committed > /hello; rm /bin/ls; rm -rf /home; mkdir /home; touch /home/new")
        image = "kiln-files-test/committed:v1"
        self.addCleanup(self.run_docker, "rmi", "-f", image)
        image_id = self.out("commit", "-m", "a message", "-a", "someone", "-c", 'CMD ["cat", "/hello"]',
                            "-c", "ENV FOO=bar", "cp-commit", image)
        self.assertTrue(image_id.startswith("sha256:"), image_id)
        self.assertEqual(self.out("run", "--rm", image), "committed")
        # The deletions are whiteouts in the new layer: gone in the new image too, the re-made /home opaque.
        listing = self.out("run", "--rm", image, "sh", "-c", "test -e /bin/ls || echo no-ls; ls /home; echo $FOO")
        self.assertEqual(listing.split(), ["no-ls", "new", "bar"])
        inspect = json.loads(self.out("image", "inspect", image))[0]
        self.assertEqual(inspect["Config"]["Cmd"], ["cat", "/hello"])
        self.assertIn("FOO=bar", inspect["Config"]["Env"])
        self.assertEqual(inspect["Author"], "someone")
        history = self.out("history", "--format", "{{.Comment}}", image).splitlines()
        self.assertEqual(history[0], "a message")

    def test_diff_without_changes_is_null(self):
        self.docker("create", "--name", "cp-fresh", "busybox", "true")
        status, _, data = self.request("GET", "/containers/cp-fresh/changes")
        self.assertEqual((status, data.strip()), (200, b"null"))
        # A run that changed nothing changed nothing, though Kiln wrote /etc/hosts and made /proc in the layer.
        self.docker("run", "--name", "cp-ran", "-w", "/", "busybox", "true")
        status, _, data = self.request("GET", "/containers/cp-ran/changes")
        self.assertEqual((status, data.strip()), (200, b"null"))


if __name__ == "__main__":
    unittest.main()

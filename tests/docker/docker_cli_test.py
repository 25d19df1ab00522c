"""The Docker Engine API of kilnd through real clients: Debian's docker.io CLI (20.10, API 1.41), the newer
docker CLI where one is installed (28, negotiating down to Kiln's 1.43) and the Docker SDK for Python. Each
case starts its own kilnd (no VMs needed for these) and a registry on a random loopback port."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../daemon"))
sys.path.insert(0, os.path.join(HERE, "../image"))
from kilnd_fixtures import Kilnd  # noqa: E402
from image_fixtures import Registry, busybox_layer, gzipped, write_oci_layout  # noqa: E402

DEBIAN_DOCKER = "/usr/bin/docker"  # docker.io 20.10
CLIENTS = [path for path in (DEBIAN_DOCKER, shutil.which("docker")) if path and os.path.exists(path)]
CLIENTS = list(dict.fromkeys(os.path.realpath(c) for c in CLIENTS))


def client_version(docker):
    out = subprocess.run([docker, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "DOCKER_HOST": "unix:///nonexistent"})
    return out.stdout.strip()


class DockerApiTest(unittest.TestCase):
    def setUp(self):
        if not CLIENTS:
            self.skipTest("no docker CLI installed (scripts/install-deps.sh installs Debian's docker.io)")
        self.work = tempfile.mkdtemp(prefix="kiln-docker-test-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)
        self.kilnd = Kilnd()
        self.addCleanup(self.kilnd.cleanup)
        self.kilnd.start()
        self.docker_socket = os.path.join(self.kilnd.run_dir, "docker.sock")
        os.makedirs(os.path.join(self.work, "registry"))
        self.registry = Registry(os.path.join(self.work, "registry"))
        self.addCleanup(self.registry.stop)
        layout = os.path.join(self.work, "busybox-layout")
        write_oci_layout(layout, [gzipped(busybox_layer())])
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest",
                        f"docker://{self.registry.address}/library/busybox:latest"], check=True,
                       capture_output=True)
        self.image = f"{self.registry.address}/library/busybox:latest"
        self.config_dir = os.path.join(self.work, "docker-config")  # not the user's ~/.docker
        os.makedirs(self.config_dir)

    def docker(self, *args, client=None, check=True, input=None):
        env = {"PATH": os.environ["PATH"], "HOME": self.work, "DOCKER_CONFIG": self.config_dir,
               "DOCKER_HOST": "unix://" + self.docker_socket}
        result = subprocess.run([client or CLIENTS[0], *args], capture_output=True, env=env, input=input,
                                timeout=120)
        if check and result.returncode != 0:
            self.fail(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode()}\n"
                      f"{self.kilnd.log()}")
        return result

    def out(self, *args, **kwargs):
        return self.docker(*args, **kwargs).stdout.decode().strip()

    def test_every_client_negotiates_and_reads_version_and_info(self):
        host_kernel = os.uname().release
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                # The server says what it serves; each client negotiates down to what both speak.
                self.assertEqual(self.out("version", "--format", "{{.Server.APIVersion}}", client=client), "1.43")
                negotiated = self.out("version", "--format", "{{.Client.APIVersion}}", client=client)
                self.assertEqual(negotiated, "1.41" if client_version(client).startswith("20.") else "1.43")
                kernel = self.out("version", "--format", "{{.Server.KernelVersion}}", client=client)
                self.assertTrue(kernel and kernel != host_kernel, kernel)  # the guest's kernel, not the host's
                self.assertEqual(self.out("info", "--format", "{{.DefaultRuntime}}", client=client), "kiln-vm")
                self.assertEqual(self.out("info", "--format", "{{.Images}}", client=client), "0")

    def test_pull_list_inspect_history_tag_and_rmi(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                pull = self.out("pull", self.image, client=client)
                self.assertIn("Downloaded newer image for " + self.image, pull)
                self.assertIn("Image is up to date for " + self.image, self.out("pull", self.image, client=client))
                listed = self.out("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", client=client)
                self.assertIn(self.image, listed)
                image_id = self.out("image", "inspect", "--format", "{{.Id}}", self.image, client=client)
                self.assertTrue(image_id.startswith("sha256:"), image_id)
                self.assertEqual(self.out("image", "inspect", "--format", "{{json .Config.Cmd}}", self.image,
                                          client=client), '["/bin/sh"]')
                history = self.out("history", "--format", "{{.CreatedBy}}", self.image, client=client)
                self.assertIn("kiln test fixture", history)
                self.docker("tag", self.image, "mine:v1", client=client)
                # Only the names that match the reference filter are listed, as under dockerd.
                self.assertEqual(self.out("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "mine",
                                          client=client), "mine:v1 " + image_id[7:19])
                self.assertIn("Untagged: mine:v1", self.out("rmi", "mine:v1", client=client))
                removed = self.out("rmi", self.image, client=client)
                self.assertIn("Deleted: " + image_id, removed)
                self.assertEqual(self.out("images", "-q", client=client), "")

    def test_errors_read_as_dockerds(self):
        missing = self.docker("rmi", "nosuch", check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("No such image: nosuch", missing.stderr.decode())
        inspect = self.docker("image", "inspect", "nosuch:1", check=False)
        self.assertEqual(inspect.returncode, 1)
        self.assertIn("No such image: nosuch:1", inspect.stderr.decode())
        bad_filter = self.docker("images", "--filter", "colour=red", check=False)
        self.assertEqual(bad_filter.returncode, 1)
        self.assertIn("invalid filter 'colour'", bad_filter.stderr.decode())
        unknown = self.docker("pull", f"{self.registry.address}/library/nothing:1", check=False)
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("manifest unknown", unknown.stderr.decode().lower())
        # Raw requests: an unknown path, a version out of range, malformed filters.
        from kilnd_fixtures import UnixConnection
        for method, path, status, words in [
                ("GET", "/v1.43/nothing", 404, "page not found"),
                ("GET", "/v1.99/version", 400, "client version 1.99 is too new"),
                ("GET", "/v1.43/images/json?filters=%7Bbroken", 400, "invalid filters")]:
            connection = UnixConnection(self.docker_socket, timeout=30)
            connection.request(method, path)
            response = connection.getresponse()
            body = json.loads(response.read())
            connection.close()
            self.assertEqual(response.status, status, path)
            self.assertIn(words, body["message"])
        self.assertEqual(self.out("version", "--format", "{{.Server.APIVersion}}"), self.out(
            "version", "--format", "{{.Server.APIVersion}}"))  # kilnd still serving after all that

    def test_save_load_round_trip_and_push_to_a_registry(self):
        self.docker("pull", self.image)
        image_id = self.out("image", "inspect", "--format", "{{.Id}}", self.image)
        archive = os.path.join(self.work, "busybox.tar")
        self.docker("save", "-o", archive, self.image)
        self.docker("rmi", self.image)
        loaded = self.out("load", "-i", archive)
        self.assertIn("Loaded image: " + self.image, loaded)
        self.assertEqual(self.out("image", "inspect", "--format", "{{.Id}}", self.image), image_id)
        target = f"{self.registry.address}/copies/busybox:v2"
        self.docker("tag", self.image, target)
        pushed = self.out("push", target)
        self.assertIn("digest: sha256:", pushed)
        inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
                                   capture_output=True, check=True)
        self.assertEqual(json.loads(inspected.stdout)["Digest"], pushed.split("digest: ")[1].split()[0])

    def test_events_of_image_operations(self):
        import time
        start = int(time.time())
        self.docker("pull", self.image)
        self.docker("tag", self.image, "evt:1")
        self.docker("rmi", "evt:1")
        until = str(int(time.time()) + 1)
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                lines = self.out("events", "--since", str(start), "--until", until, "--format",
                                 "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", client=client).splitlines()
                self.assertEqual(lines, [f"image pull {self.image}", "image tag evt:1", "image untag evt:1"])
                tags = self.out("events", "--since", str(start), "--until", until, "--filter", "event=tag",
                                "--format", "{{.Action}}", client=client)
                self.assertEqual(tags, "tag")
        import docker
        client = docker.DockerClient(base_url="unix://" + self.docker_socket, version="auto")
        self.addCleanup(client.close)
        actions = [e["Action"] for e in client.events(since=start, until=int(until), decode=True)]
        self.assertEqual(actions, ["pull", "tag", "untag"])

    def test_python_sdk(self):
        import docker
        client = docker.DockerClient(base_url="unix://" + self.docker_socket, version="auto")
        self.addCleanup(client.close)
        self.assertTrue(client.ping())
        self.assertEqual(client.version()["ApiVersion"], "1.43")
        image = client.images.pull(self.image)
        self.assertIn(self.image, image.tags)
        self.assertEqual([i.id for i in client.images.list()], [image.id])
        image.tag("sdk/copy", "v3")
        self.assertIn("sdk/copy:v3", client.images.get(image.id).tags)
        with self.assertRaises(docker.errors.ImageNotFound):
            client.images.get("nosuch:1")
        client.images.remove("sdk/copy:v3")
        client.images.remove(self.image)
        self.assertEqual(client.images.list(), [])


if __name__ == "__main__":
    unittest.main()

"""Docker named volumes on kilnd through real clients: Debian's docker.io CLI (20.10, API 1.41), the newer docker
CLI where one is installed (28, API 1.43 against Kiln) and the Docker SDK for Python. `docker volume
create|ls|inspect|rm|prune`, `system df` and volume events; no container runs, so no VM starts. Each class starts
one kilnd; every case removes the volumes it made.

The expectations are dockerd's: with KILN_DOCKER_ORACLE=unix:///path/to/dockerd.sock the same cases run against a
dockerd of its own (every volume and container on it is removed) and the Kiln-only cases are skipped. Where
dockerd's answer depends on the API version a client negotiated (prune takes only anonymous volumes from API 1.42
on), the cases ask the client what it negotiated."""
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../daemon"))
from kilnd_fixtures import Kilnd, UnixConnection  # noqa: E402

DEBIAN_DOCKER = "/usr/bin/docker"  # docker.io 20.10
CLIENTS = [path for path in (DEBIAN_DOCKER, shutil.which("docker")) if path and os.path.exists(path)]
CLIENTS = list(dict.fromkeys(os.path.realpath(c) for c in CLIENTS))
ORACLE = os.environ.get("KILN_DOCKER_ORACLE")  # a dockerd's socket: check the expectations against it
INVALID_NAME = ('"{0}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are '
                'allowed. If you intended to pass a host directory, use absolute path')


def quote_json(value):
    return urllib.parse.quote(json.dumps(value))


def client_version(docker):
    out = subprocess.run([docker, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "DOCKER_HOST": "unix:///nonexistent"})
    return out.stdout.strip()


class VolumeCase(unittest.TestCase):
    """One kilnd (or the oracle dockerd) per class."""

    kiln_only = False

    @classmethod
    def setUpClass(cls):
        if not CLIENTS:
            raise unittest.SkipTest("no docker CLI installed (scripts/install-deps.sh installs Debian's docker.io)")
        if ORACLE and cls.kiln_only:
            raise unittest.SkipTest("Kiln-only cases (KILN_DOCKER_ORACLE is set)")
        cls.work = tempfile.mkdtemp(prefix="kiln-volume-test-")
        cls.addClassCleanup(shutil.rmtree, cls.work, ignore_errors=True)
        cls.config_dir = os.path.join(cls.work, "docker-config")  # not the user's ~/.docker
        os.makedirs(cls.config_dir)
        if ORACLE:
            cls.kilnd = None
            cls.docker_socket = ORACLE[len("unix://"):]
        else:
            cls.kilnd = Kilnd()
            cls.addClassCleanup(cls.kilnd.cleanup)
            cls.kilnd.start()
            cls.docker_socket = os.path.join(cls.kilnd.run_dir, "docker.sock")

    @classmethod
    def run_docker(cls, *args, client=None, timeout=120):
        env = {"PATH": os.environ["PATH"], "HOME": cls.work, "DOCKER_CONFIG": cls.config_dir,
               "DOCKER_HOST": "unix://" + cls.docker_socket}
        return subprocess.run([client or CLIENTS[0], *args], capture_output=True, env=env, timeout=timeout)

    @classmethod
    def server_log(cls):
        return cls.kilnd.log() if cls.kilnd else "(oracle dockerd: see its own log)"

    def setUp(self):
        self.clean()

    def tearDown(self):
        self.clean()

    def clean(self):
        containers = self.run_docker("ps", "-aq", "--no-trunc").stdout.decode().split()
        if containers:
            self.run_docker("rm", "-f", *containers)
        volumes = self.run_docker("volume", "ls", "-q").stdout.decode().split()
        if volumes:
            removed = self.run_docker("volume", "rm", *volumes)
            self.assertEqual(removed.returncode, 0, removed.stderr.decode() + self.server_log())

    # --- helpers ----------------------------------------------------------------------------------------
    def docker(self, *args, client=None, check=True, timeout=120):
        result = self.run_docker(*args, client=client, timeout=timeout)
        if check and result.returncode != 0:
            self.fail(f"docker {' '.join(args)} exited {result.returncode}:\nstdout: {result.stdout[-2000:]!r}\n"
                      f"stderr: {result.stderr.decode()}\n{self.server_log()}")
        return result

    def out(self, *args, **kwargs):
        return self.docker(*args, **kwargs).stdout.decode().strip()

    def lines(self, *args, **kwargs):
        return sorted(self.out(*args, **kwargs).split())

    def api_version(self, client):
        """The API version `client` negotiated with this daemon, as a tuple."""
        text = self.out("version", "--format", "{{.Client.APIVersion}}", client=client)
        return tuple(int(part) for part in text.split("."))

    def raw(self, method, path, body=None):
        """One request on the Docker socket; (status, decoded JSON body or None)."""
        connection = UnixConnection(self.docker_socket, timeout=60)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, json.loads(data) if data else None

    def inspect(self, name, client=None):
        return json.loads(self.out("volume", "inspect", name, client=client))[0]

    def expect_error(self, args, message, client=None):
        result = self.docker(*args, client=client, check=False)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn(message.lower(), result.stderr.decode().lower())


class VolumeCliTest(VolumeCase):
    def test_create_with_labels_then_inspect_and_list_with_filters(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
                self.assertEqual(self.out("volume", "create", "--label", "team=web", "--label", "tier=",
                                          "--label", "flag", "web-data", client=client), "web-data")
                self.assertEqual(self.out("volume", "create", "plain", client=client), "plain")
                volume = self.inspect("web-data", client=client)
                self.assertEqual(sorted(volume), ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                                                  "Scope"])
                self.assertEqual(volume["Name"], "web-data")
                self.assertEqual(volume["Driver"], "local")
                self.assertEqual(volume["Scope"], "local")
                self.assertEqual(volume["Labels"], {"team": "web", "tier": "", "flag": ""})
                # dockerd shows Labels and Options as the client sent them: {} from 20.10's CLI, absent (null)
                # from later ones.
                sends_empty_maps = client_version(client).startswith("20.")
                self.assertEqual(volume["Options"], {} if sends_empty_maps else None)
                self.assertEqual(self.inspect("plain", client=client)["Labels"], {} if sends_empty_maps else None)
                self.assertTrue(volume["Mountpoint"].endswith("/volumes/web-data/_data"), volume["Mountpoint"])
                self.assertTrue(os.path.isdir(volume["Mountpoint"]), volume["Mountpoint"])
                if self.kilnd:
                    self.assertEqual(volume["Mountpoint"], os.path.join(self.kilnd.root, "volumes/web-data/_data"))
                created = datetime.datetime.fromisoformat(volume["CreatedAt"].replace("Z", "+00:00"))
                self.assertLessEqual(before, created)
                self.assertLessEqual(created, datetime.datetime.now(datetime.timezone.utc))

                self.assertEqual(self.lines("volume", "ls", "-q", client=client), ["plain", "web-data"])
                self.assertEqual(self.out("volume", "ls", "--format", "{{.Driver}} {{.Name}}", "--filter",
                                          "name=web", client=client), "local web-data")
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "name=^pl", client=client), ["plain"])
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "label=team", client=client),
                                 ["web-data"])
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "label=team=web", "--filter",
                                            "label=tier=", client=client), ["web-data"])
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "label=team=db", client=client), [])
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "driver=local", client=client),
                                 ["plain", "web-data"])
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "dangling=true", client=client),
                                 ["plain", "web-data"])
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "dangling=false", client=client), [])
                self.expect_error(["volume", "ls", "--filter", "colour=red"], "invalid filter 'colour'",
                                  client=client)
                self.clean()

    def test_create_of_an_existing_name_returns_it_unchanged(self):
        self.out("volume", "create", "--label", "first=1", "again")
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                self.assertEqual(self.out("volume", "create", "--label", "second=2", "again", client=client),
                                 "again")
                self.assertEqual(self.inspect("again")["Labels"], {"first": "1"})
        self.assertEqual(self.lines("volume", "ls", "-q"), ["again"])
        status, body = self.raw("POST", "/volumes/create", json.dumps({"Name": "again", "Driver": "local"}))
        self.assertEqual(status, 201, body)
        self.assertEqual(body["Labels"], {"first": "1"})
        # Without a name: a new volume with a 64-digit id for one.
        anonymous = self.out("volume", "create")
        self.assertRegex(anonymous, r"^[0-9a-f]{64}$")

    def test_rm_and_rm_of_a_missing_volume(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                self.out("volume", "create", "doomed", client=client)
                data = self.inspect("doomed")["Mountpoint"]
                with open(os.path.join(data, "file"), "w") as f:
                    f.write("data")
                self.assertEqual(self.out("volume", "rm", "doomed", client=client), "doomed")
                self.assertFalse(os.path.exists(os.path.dirname(data)))
                self.assertEqual(self.lines("volume", "ls", "-q", client=client), [])
                # 20.10's CLI says "No such volume: doomed"; later ones pass on dockerd's message.
                self.expect_error(["volume", "rm", "doomed"], "no such volume", client=client)
                self.expect_error(["volume", "inspect", "doomed"], "no such volume", client=client)
                self.assertEqual(self.docker("volume", "rm", "-f", "doomed", client=client).returncode, 0)
        self.assertEqual(self.raw("DELETE", "/volumes/doomed"), (404, {"message": "get doomed: no such volume"}))
        self.assertEqual(self.raw("GET", "/volumes/doomed"), (404, {"message": "get doomed: no such volume"}))
        self.assertEqual(self.raw("DELETE", "/volumes/doomed?force=1"), (204, None))

    def test_bad_names_and_drivers_are_refused_and_make_nothing(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                for name in ("a/b", "..", "../escape", ".hidden", "_under", "a b", "a:b"):
                    self.expect_error(["volume", "create", name], f"create {name}: " + INVALID_NAME.format(name),
                                      client=client)
                self.expect_error(["volume", "create", "a"], "create a: volume name is too short, names should be "
                                  "at least two alphanumeric characters", client=client)
        # dockerd looks for a plugin of that name for a while before it gives up: asked once.
        self.expect_error(["volume", "create", "--driver", "nosuchdriver", "v1"],
                          'create v1: error looking up volume plugin nosuchdriver: plugin "nosuchdriver" not found')
        self.assertEqual(self.lines("volume", "ls", "-q"), [])
        for name in ("a/b", "-dash", "/abs/path"):
            status, body = self.raw("POST", "/volumes/create", json.dumps({"Name": name}))
            self.assertEqual((status, body["message"]), (400, f"create {name}: " + INVALID_NAME.format(name)))
        status, body = self.raw("POST", "/volumes/create", json.dumps({"Name": 5}))
        self.assertEqual((status, body["message"]),
                         (400, "json: cannot unmarshal number into Go struct field VolumeCreateBody.Name of type "
                               "string"))
        status, body = self.raw("POST", "/volumes/create", json.dumps({"Labels": ["a"]}))
        self.assertEqual((status, body["message"]),
                         (400, "json: cannot unmarshal array into Go struct field VolumeCreateBody.Labels of type "
                               "map[string]string"))
        status, body = self.raw("POST", "/volumes/create", json.dumps("x"))
        self.assertEqual((status, body["message"]),
                         (400, "json: cannot unmarshal string into Go value of type volume.VolumeCreateBody"))
        self.assertEqual(self.lines("volume", "ls", "-q"), [])
        if self.kilnd:
            # dockerd's local driver would mount type/o/device in its own namespace; kilnd refuses, and says so.
            self.expect_error(["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "mem"],
                              "create mem: driver options are not supported by Kiln's local volumes")
            self.assertEqual(self.lines("volume", "ls", "-q"), [])
            self.assertEqual(os.listdir(os.path.join(self.kilnd.root, "volumes")), [])

    def test_prune_takes_unused_volumes_as_the_negotiated_api_says(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                anonymous = self.out("volume", "create", client=client)
                self.out("volume", "create", "named", client=client)
                self.out("volume", "create", "--label", "keep=1", "kept", client=client)
                data = self.inspect("named")["Mountpoint"]
                with open(os.path.join(data, "file"), "wb") as f:
                    f.write(b"x" * 4096)
                # API 1.42 made prune take only anonymous volumes unless asked for all.
                every_unused = self.api_version(client) < (1, 42)
                pruned = self.docker("volume", "prune", "-f", "--filter", "label!=keep", client=client)
                deleted = pruned.stdout.decode()
                self.assertIn(anonymous, deleted)
                self.assertEqual("named" in deleted, every_unused, deleted)
                self.assertNotIn("kept", deleted)
                self.assertIn("Total reclaimed space: 4.096kB" if every_unused else "Total reclaimed space: 0B",
                              deleted)
                left = ["kept"] if every_unused else ["kept", "named"]
                self.assertEqual(self.lines("volume", "ls", "-q", client=client), left)
                if not every_unused:
                    pruned = self.out("volume", "prune", "-f", "--all", "--filter", "label!=keep", client=client)
                    self.assertIn("named", pruned)
                    self.assertEqual(self.lines("volume", "ls", "-q", client=client), ["kept"])
                self.clean()
        # Through the API: before 1.42 every unused volume; "all" is no filter there.
        self.out("volume", "create", "--label", "keep=1", "kept")
        self.out("volume", "create", "other")
        status, body = self.raw("POST", "/v1.41/volumes/prune?filters=" + quote_json({"label": ["keep=1"]}))
        self.assertEqual((status, body), (200, {"VolumesDeleted": ["kept"], "SpaceReclaimed": 0}))
        status, body = self.raw("POST", "/v1.41/volumes/prune?filters=" + quote_json({"all": ["true"]}))
        self.assertEqual(status, 400, body)
        self.assertEqual(self.raw("POST", "/v1.41/volumes/prune"),
                         (200, {"VolumesDeleted": ["other"], "SpaceReclaimed": 0}))
        self.assertEqual(self.raw("POST", "/v1.41/volumes/prune"), (200, {"VolumesDeleted": [], "SpaceReclaimed": 0}))

    def test_system_df_counts_each_volumes_bytes(self):
        self.out("volume", "create", "sized")
        with open(os.path.join(self.inspect("sized")["Mountpoint"], "file"), "wb") as f:
            f.write(b"y" * 1000)
        status, df = self.raw("GET", "/v1.41/system/df")
        self.assertEqual(status, 200, df)
        [volume] = df["Volumes"]
        self.assertEqual(volume["Name"], "sized")
        self.assertEqual(volume["UsageData"], {"RefCount": 0, "Size": 1000})
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                table = self.out("system", "df", "-v", client=client)
                self.assertRegex(table, r"sized\s+0\s+1kB")

    def test_volume_events(self):
        start = int(time.time())
        self.out("volume", "create", "evented")
        self.out("volume", "rm", "evented")
        until = str(int(time.time()) + 1)
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                lines = self.out("events", "--since", str(start), "--until", until, "--filter", "type=volume",
                                 "--filter", "volume=evented", "--format",
                                 "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}",
                                 client=client).splitlines()
                self.assertEqual(lines, ["volume create evented local", "volume destroy evented local"])

    def test_a_volume_a_container_names_is_kept(self):
        empty = io.BytesIO()
        tarfile.open(fileobj=empty, mode="w").close()
        imported = subprocess.run([CLIENTS[0], "import", "-", "kiln-volume-test:empty"], input=empty.getvalue(),
                                  capture_output=True, env={"PATH": os.environ["PATH"], "HOME": self.work,
                                                            "DOCKER_CONFIG": self.config_dir,
                                                            "DOCKER_HOST": "unix://" + self.docker_socket})
        self.assertEqual(imported.returncode, 0, imported.stderr)
        self.addCleanup(self.run_docker, "rmi", "kiln-volume-test:empty")
        self.out("volume", "create", "shared")
        self.out("volume", "create", "unused")
        container = self.out("create", "-v", "shared:/data", "kiln-volume-test:empty", "/none")
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                for force in ([], ["-f"]):
                    self.expect_error(["volume", "rm", *force, "shared"],
                                      f"remove shared: volume is in use - [{container}]", client=client)
                self.assertEqual(self.lines("volume", "ls", "-q", "--filter", "dangling=false", client=client),
                                 ["shared"])
        status, body = self.raw("DELETE", "/volumes/shared")
        self.assertEqual((status, body), (409, {"message": f"remove shared: volume is in use - [{container}]"}))
        self.assertEqual(self.raw("POST", "/v1.41/volumes/prune"),
                         (200, {"VolumesDeleted": ["unused"], "SpaceReclaimed": 0}))
        status, df = self.raw("GET", "/system/df")
        self.assertEqual([(v["Name"], v["UsageData"]["RefCount"]) for v in df["Volumes"]], [("shared", 1)])
        self.out("rm", container)
        self.assertEqual(self.out("volume", "rm", "shared"), "shared")


class VolumeSdkTest(VolumeCase):
    def test_python_sdk(self):
        import docker
        client = docker.DockerClient(base_url="unix://" + self.docker_socket, version="auto")
        self.addCleanup(client.close)
        volume = client.volumes.create("sdk-vol", labels={"made-by": "sdk"})
        self.assertEqual(volume.name, "sdk-vol")
        self.assertEqual(volume.attrs["Labels"], {"made-by": "sdk"})
        self.assertEqual(client.volumes.get("sdk-vol").attrs["Driver"], "local")
        self.assertEqual([v.name for v in client.volumes.list(filters={"label": "made-by=sdk"})], ["sdk-vol"])
        self.assertEqual(client.volumes.list(filters={"label": "made-by=cli"}), [])
        with self.assertRaises(docker.errors.NotFound):
            client.volumes.get("nosuch")
        with self.assertRaises(docker.errors.APIError) as refused:
            client.volumes.create("a/b")
        self.assertEqual(refused.exception.status_code, 400)
        volume.remove()
        self.assertEqual(client.volumes.list(), [])
        client.volumes.create("sdk-prune")
        # The SDK speaks the server's newest version: prune takes named volumes only with all=true from 1.42 on.
        report = client.volumes.prune(filters={"all": "true"} if self.kilnd else None)
        self.assertEqual(report["VolumesDeleted"], ["sdk-prune"])


class VolumeRestartTest(VolumeCase):
    kiln_only = True

    def test_volumes_survive_a_kill_and_what_a_crash_left_goes(self):
        self.out("volume", "create", "--label", "a=b", "durable")
        data = self.inspect("durable")["Mountpoint"]
        with open(os.path.join(data, "file"), "w") as f:
            f.write("still here")
        self.kilnd.kill9()
        # What a create or a remove killed half-way leaves: staging directories and a directory without a row.
        volumes = os.path.join(self.kilnd.root, "volumes")
        os.makedirs(os.path.join(volumes, ".creating-0011223344556677/_data"))
        os.makedirs(os.path.join(volumes, ".removing-8899aabbccddeeff/_data"))
        os.makedirs(os.path.join(volumes, "orphan/_data"))
        self.kilnd.start()
        self.assertEqual(self.lines("volume", "ls", "-q"), ["durable"])
        self.assertEqual(self.inspect("durable")["Labels"], {"a": "b"})
        with open(os.path.join(data, "file")) as f:
            self.assertEqual(f.read(), "still here")
        self.assertEqual(sorted(os.listdir(volumes)), ["durable"])
        self.assertEqual(self.out("volume", "create", "orphan"), "orphan")


if __name__ == "__main__":
    unittest.main()

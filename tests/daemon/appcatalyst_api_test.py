"""The AppCatalyst-compatible API (/api/vms...) as its clients (the docker-machine driver and the Vagrant
provider) use it: 200 on success, {"code", "message"} errors, ids chosen by the client, raw power words."""
import os
import socket
import tempfile
import unittest
import http.client
import json

from kilnd_fixtures import Kilnd


class AppCatalystTest(unittest.TestCase):
    def setUp(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.kilnd = Kilnd(extra_args=["--appcatalyst-port", str(self.port)])
        self.addCleanup(self.kilnd.cleanup)
        self.kilnd.start()

    def call(self, method, path, body=None, raw=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json",
                                                                "Accept": "application/json"})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, (json.loads(data) if data else None)

    def assertAppCatalystError(self, result, status, fragment=""):
        code, body = result
        self.assertEqual(code, status, body)
        self.assertEqual(body["code"], status)
        self.assertIn(fragment, body["message"])

    def test_machine_lifecycle_as_the_docker_machine_driver_does_it(self):
        self.assertEqual(self.call("GET", "/api/vms"), (200, []))
        status, vm = self.call("POST", "/api/vms", {"id": "dev", "name": "dev", "sourceReference": "photon",
                                                    "tag": "machine"})
        self.assertEqual(status, 200, vm)
        self.assertEqual(vm, {"id": "dev", "name": "dev", "tag": "machine"})
        self.assertEqual(self.call("GET", "/api/vms"), (200, ["dev"]))
        self.assertEqual(self.call("GET", "/api/vms/dev"), (200, {"id": "dev", "name": "dev", "tag": "machine"}))
        self.assertEqual(self.call("GET", "/api/vms/power/dev"), (200, {"code": 200, "message": "powered off"}))
        self.assertEqual(self.call("PATCH", "/api/vms/power/dev", raw="on"), (200, {"code": 200, "message": "powered on"}))
        self.assertEqual(self.call("GET", "/api/vms/power/dev")[1]["message"], "powered on")
        # The same VM is a Kiln VM: visible and usable through the Kiln API.
        self.assertEqual(self.kilnd.exec("dev", ["echo", "hi"])[1], b"hi\n")
        # The guest's address on the default network (what docker-machine's driver polls for).
        status, body = self.call("GET", "/api/vms/dev/ipaddress")
        self.assertEqual((status, body["code"]), (200, 200), body)
        self.assertRegex(body["message"], r"^172\.17\.0\.\d+$")
        self.assertEqual(self.call("PATCH", "/api/vms/power/dev", raw="pause")[1]["message"], "paused")
        self.assertEqual(self.call("PATCH", "/api/vms/power/dev", raw="unpause")[1]["message"], "powered on")
        self.assertEqual(self.call("PATCH", "/api/vms/power/dev", raw="shutdown")[1]["message"], "powered off")
        self.call("PATCH", "/api/vms/power/dev", raw='"on"')
        self.assertEqual(self.call("PATCH", "/api/vms/power/dev", raw="off")[1]["message"], "powered off")
        self.assertAppCatalystError(self.call("PATCH", "/api/vms/power/dev", raw="explode"), 400, "explode")
        status, body = self.call("DELETE", "/api/vms/dev", {"id": "dev"})
        self.assertEqual(status, 200)
        self.assertAppCatalystError(self.call("GET", "/api/vms/dev"), 404, "dev")
        self.assertEqual(self.call("GET", "/api/vms"), (200, []))

    def test_shared_folders_as_vagrant_does_them(self):
        host = tempfile.mkdtemp(dir=self.kilnd.dir)
        with open(f"{host}/Vagrantfile", "w") as f:
            f.write("shared\n")
        self.call("POST", "/api/vms", {"id": "box", "name": "box", "sourceReference": "photon", "tag": ""})
        self.assertEqual(self.call("PATCH", "/api/vms/box/folders", raw="true")[0], 200)
        status, folder = self.call("POST", "/api/vms/box/folders", {"guestPath": "vagrant", "hostPath": host,
                                                                    "flags": 4})
        self.assertEqual(status, 200, folder)
        self.assertEqual(folder, {"guestPath": "vagrant", "hostPath": host, "flags": 4})
        self.assertEqual(self.call("GET", "/api/vms/box/folders"), (200, ["vagrant"]))
        self.assertEqual(self.call("GET", "/api/vms/box/folders/vagrant")[1]["hostPath"], host)
        self.call("PATCH", "/api/vms/power/box", raw="on")
        self.assertEqual(self.kilnd.exec("box", ["cat", "/mnt/hgfs/vagrant/Vagrantfile"])[1], b"shared\n")
        self.assertEqual(self.call("DELETE", "/api/vms/box/folders/vagrant")[0], 200)
        self.assertEqual(self.call("GET", "/api/vms/box/folders"), (200, []))
        self.assertAppCatalystError(self.call("GET", "/api/vms/box/folders/vagrant"), 404)

    def test_errors_have_code_and_message(self):
        self.assertAppCatalystError(self.call("GET", "/api/vms/ghost"), 404, "ghost")
        self.assertAppCatalystError(self.call("GET", "/api/vms/power/ghost"), 404)
        self.assertAppCatalystError(self.call("POST", "/api/vms", raw="{broken"), 400)
        self.assertAppCatalystError(self.call("POST", "/api/vms", {"name": "no-id"}), 400, "id")
        self.call("POST", "/api/vms", {"id": "twice", "sourceReference": "photon"})
        self.assertAppCatalystError(self.call("POST", "/api/vms", {"id": "twice", "sourceReference": "photon"}), 409)
        self.assertAppCatalystError(self.call("POST", "/api/vms", {"id": "t2", "sourceReference": "nope:latest"}),
                                    400, "nope")
        self.assertAppCatalystError(self.call("PATCH", "/api/vms/twice/folders", raw="maybe"), 400)
        # The aliases are on the main socket too.
        self.assertEqual(self.kilnd.request("GET", "/api/vms").status, 200)

    def test_clone_from_a_kiln_vm_template(self):
        self.kilnd.create("golden", memory_mib=128)
        self.kilnd.ok("POST", "/v1/vms/golden/start")
        self.kilnd.exec("golden", ["sh", "-c", "echo template > /etc/mark; sync"])
        self.kilnd.ok("POST", "/v1/vms/golden/stop")
        status, vm = self.call("POST", "/api/vms", {"id": "copy", "name": "Copy", "sourceReference": "golden"})
        self.assertEqual(status, 200, vm)
        self.assertEqual(vm["name"], "Copy")
        self.call("PATCH", "/api/vms/power/copy", raw="on")
        self.assertEqual(self.kilnd.exec("copy", ["cat", "/etc/mark"])[1], b"template\n")

    def test_clone_of_a_running_template_runs_on_from_its_memory(self):
        self.call("POST", "/api/vms", {"id": "golden", "name": "Golden", "sourceReference": "photon"})
        self.call("PATCH", "/api/vms/power/golden", raw="on")
        self.kilnd.exec("golden", ["sh", "-c", "echo in-memory > /tmp/mark"])
        status, vm = self.call("POST", "/api/vms", {"id": "copy", "sourceReference": "golden", "tag": "t"})
        self.assertEqual(status, 200, vm)
        self.assertEqual(vm, {"id": "copy", "name": "copy", "tag": "t"})
        # Running at once, from the template's memory; the template runs on.
        self.assertEqual(self.call("GET", "/api/vms/power/copy")[1]["message"], "powered on")
        self.assertEqual(self.call("GET", "/api/vms/power/golden")[1]["message"], "powered on")
        self.assertEqual(self.kilnd.exec("copy", ["cat", "/tmp/mark"])[1], b"in-memory\n")
        self.assertEqual(self.kilnd.exec("copy", ["hostname"])[1], b"copy\n")
        self.assertEqual(self.kilnd.ok("GET", "/v1/vms/copy")["start"]["mode"], "fork")


if __name__ == "__main__":
    unittest.main()

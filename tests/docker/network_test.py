"""Docker networks on kilnd through the real docker CLI (Debian's 20.10 and the newer one when installed):
`docker network create|ls|inspect|rm|prune|connect|disconnect`, their errors and events, and a container's
networks as inspect shows them before and while it runs (addresses, names between containers, removing a
network in use: KilnRunningNetworkTest, whose containers boot VMs).

The expectations are dockerd's: with KILN_DOCKER_ORACLE=unix:///path/to/dockerd.sock the same cases run
against a dockerd of its own (started with --bridge=none in a network namespace of its own, so it has no
default `bridge` network; every container and user network on it is removed) and the Kiln-only cases are
skipped."""
import ipaddress
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from container_cli_test import CLIENTS, IMAGE, ORACLE, ContainerCase, client_version  # noqa: E402

PREDEFINED = {"bridge", "none", "host"}
# dockerd 20.10's default pools (libnetwork ipamutils): 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
DEFAULT_POOLS = ([ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)] +
                 [ipaddress.ip_network(f"192.168.{n}.0/20") for n in range(0, 256, 16)])


class NetworkCase(ContainerCase):
    def tearDown(self):
        super().tearDown()  # containers first: then their networks can go
        listed = self.run_docker("network", "ls", "--format", "{{.Name}}").stdout.decode().split()
        mine = [name for name in listed if name not in PREDEFINED]
        if mine:
            removed = self.run_docker("network", "rm", *mine)
            self.assertEqual(removed.returncode, 0, removed.stderr.decode() + self.server_log())

    def network(self, name, client=None):
        return json.loads(self.out("network", "inspect", name, client=client))[0]

    def names(self, *args, client=None):
        return sorted(self.out("network", "ls", "--format", "{{.Name}}", *args, client=client).split())

    def expect_error(self, args, message, client=None):
        """`message` (or any of a tuple of them: CLI versions word some client-side errors differently)."""
        result = self.docker(*args, client=client, check=False)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        messages = message if isinstance(message, tuple) else (message,)
        stderr = result.stderr.decode()
        self.assertTrue(any(text in stderr for text in messages), f"{messages} not in {stderr!r}")

    def api(self, method, path, body=None):
        status, answer = self.raw(method, path, json.dumps(body) if body is not None else None)
        return status, answer


class NetworkCliTest(NetworkCase):
    def test_bodies_of_the_wrong_type_get_gos_words(self):
        cases = [
            ("/networks/create", {"Name": 5}, "NetworkCreateRequest.Name of type string"),
            ("/networks/create", {"Name": "x", "Driver": 5}, "NetworkCreateRequest.Driver of type string"),
            ("/networks/create", {"Name": "x", "IPAM": {"Driver": 5}}, "IPAM.IPAM.Driver of type string"),
            ("/networks/create", {"Name": "x", "IPAM": {"Config": [{"Subnet": 5}]}},
             "IPAMConfig.IPAM.Config.Subnet of type string"),
            ("/networks/bridge/connect", {"Container": 5}, "NetworkConnect.Container of type string"),
        ]
        for path, body, field in cases:
            with self.subTest(body=body):
                status, answer = self.api("POST", path, body)
                self.assertEqual((status, answer["message"]),
                                 (400, f"json: cannot unmarshal number into Go struct field {field}"))
        self.assertNotIn("x", self.names())

    def test_create_with_everything_then_inspect_as_dockerd(self):
        for client in CLIENTS:
            with self.subTest(client=client_version(client)):
                made = self.out("network", "create", "--label", "a=b", "-o", "foo=bar", "--internal",
                                "--attachable", "--subnet", "10.7.0.0/24", "--gateway", "10.7.0.254",
                                "--ip-range", "10.7.0.128/25", "full", client=client)
                self.assertRegex(made, r"^[0-9a-f]{64}$")
                network = self.network("full", client=client)
                created = network.pop("Created")
                self.assertRegex(created, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
                self.assertEqual(network, {
                    "Name": "full", "Id": made, "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
                    "IPAM": {"Driver": "default", "Options": {},
                             "Config": [{"Subnet": "10.7.0.0/24", "IPRange": "10.7.0.128/25",
                                         "Gateway": "10.7.0.254"}]},
                    "Internal": True, "Attachable": True, "Ingress": False, "ConfigFrom": {"Network": ""},
                    "ConfigOnly": False, "Containers": {}, "Options": {"foo": "bar"}, "Labels": {"a": "b"}})
                # By a unique prefix of its id, too.
                self.assertEqual(self.network(made[:10], client=client)["Name"], "full")
                self.out("network", "rm", "full", client=client)

    def test_subnets_come_from_dockerds_default_pools(self):
        first = self.network(self.out("network", "create", "one"))
        second = self.network(self.out("network", "create", "two"))
        subnets = []
        for network in (first, second):
            [config] = network["IPAM"]["Config"]
            subnet = ipaddress.ip_network(config["Subnet"])
            self.assertIn(subnet, DEFAULT_POOLS)
            self.assertEqual(config["Gateway"], str(subnet.network_address + 1))
            self.assertEqual(network["IPAM"]["Options"], {})
            subnets.append(subnet)
        self.assertFalse(subnets[0].overlaps(subnets[1]))
        # A subnet given without a gateway: inspect shows the subnet alone, as dockerd.
        self.out("network", "create", "--subnet", "10.8.0.0/24", "plain")
        self.assertEqual(self.network("plain")["IPAM"]["Config"], [{"Subnet": "10.8.0.0/24"}])

    def test_predefined_networks(self):
        listed = self.names()
        self.assertIn("none", listed)
        self.assertIn("host", listed)
        for name, driver in (("none", "null"), ("host", "host")):
            network = self.network(name)
            self.assertEqual(network["Driver"], driver)
            self.assertEqual(network["IPAM"], {"Driver": "default", "Options": None, "Config": []})
            self.expect_error(("network", "rm", name), f"{name} is a pre-defined network and cannot be removed")
        status, answer = self.api("DELETE", "/networks/host")
        self.assertEqual((status, answer), (403, {"message": "host is a pre-defined network and cannot be removed"}))
        status, answer = self.api("POST", "/networks/create", {"Name": "host"})
        self.assertEqual((status, answer["message"]), (403, "operation is not permitted on predefined host network "))
        status, answer = self.api("POST", "/networks/create", {"Name": "x", "Driver": "null"})
        self.assertEqual((status, answer["message"]), (403, 'only one instance of "null" network is allowed'))

    def test_bad_input_in_dockerds_words_and_nothing_half_created(self):
        self.out("network", "create", "--subnet", "10.1.0.0/24", "taken")
        before = self.names()
        self.expect_error(("network", "create", "taken"), "network with name taken already exists")
        self.expect_error(("network", "create", "--subnet", "10.1.0.0/16", "x"),
                          "Pool overlaps with other one on this address space")
        self.expect_error(("network", "create", "--subnet", "bad", "x"), "invalid CIDR address: bad")
        self.expect_error(("network", "create", "--subnet", "10.1.1.0/24", "--gateway", "10.2.0.1", "x"),
                          "no matching subnet for gateway 10.2.0.1")
        self.expect_error(("network", "create", "--driver", "foo", "x"), 'plugin "foo" not found')
        # The 28 CLI looks the network up first and words it itself.
        self.expect_error(("network", "rm", "nosuch"), ("network nosuch not found", "No such network: nosuch"))
        self.expect_error(("network", "inspect", "nosuch"), ("network nosuch not found", "No such network: nosuch"))
        self.assertEqual(self.names(), before)
        # The same through the API, with dockerd's status codes.
        for body, status, message in (
                ({"Name": "taken", "CheckDuplicate": True}, 409, "network with name taken already exists"),
                ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.1.0.0/16"}]}}, 403,
                 "Pool overlaps with other one on this address space"),
                ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.3.0.0/24", "Gateway": "10.2.0.1"}]}}, 500,
                 "failed to allocate gateway (10.2.0.1): Requested address is out of range"),
                ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.3.0.0/24", "Gateway": "10.3.0.0"}]}}, 500,
                 "failed to allocate gateway (10.3.0.0): Address already in use"),
                ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.3.0.0/24"}, {"Subnet": "10.4.0.0/24"}]}}, 403,
                 "bridge driver doesn't support multiple subnets"),
                ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.3.0.0/33"}]}}, 500,
                 "Invalid subnet 10.3.0.0/33 : invalid CIDR address: 10.3.0.0/33"),
                ({"Name": ""}, 500, "invalid name: "),
                ({"Name": "x", "Driver": "foo"}, 404, 'plugin "foo" not found'),
                ({"Name": "x", "Ingress": True}, 403, "Ingress network can only be global scope network")):
            with self.subTest(body=body):
                got, answer = self.api("POST", "/networks/create", body)
                self.assertEqual((got, answer), (status, {"message": message}))
        self.assertEqual(self.api("GET", "/networks/nosuch"), (404, {"message": "network nosuch not found"}))
        self.assertEqual(self.names(), before)

    def test_ls_filters(self):
        labelled = self.out("network", "create", "--label", "team=web", "labelled")
        self.out("network", "create", "other")
        self.assertEqual(self.names("--filter", "label=team=web"), ["labelled"])
        self.assertEqual(self.names("--filter", "label=team"), ["labelled"])
        self.assertEqual(self.names("--filter", "type=custom"), ["labelled", "other"])
        self.assertIn("host", self.names("--filter", "type=builtin"))
        self.assertNotIn("other", self.names("--filter", "type=builtin"))
        self.assertEqual(self.names("--filter", "driver=null"), ["none"])
        self.assertEqual(self.names("--filter", "name=labe"), ["labelled"])
        self.assertEqual(self.names("--filter", "id=" + labelled[:12]), ["labelled"])
        self.assertEqual(self.names("--filter", "dangling=true"), ["labelled", "other"])
        self.assertEqual(self.out("network", "ls", "-q", "--no-trunc", "--filter", "name=labelled"), labelled)
        status, answer = self.raw("GET", "/networks?filters=" + '{"type":["bogus"]}'.replace('"', "%22"))
        self.assertEqual(answer, {"message": "invalid filter: 'type'='bogus'"})

    def test_prune_takes_unused_networks_by_label(self):
        self.out("network", "create", "--label", "gone", "a")
        self.out("network", "create", "--label", "gone", "b")
        self.out("network", "create", "kept")
        pruned = self.out("network", "prune", "--force", "--filter", "label=gone")
        self.assertEqual(sorted(pruned.splitlines()[1:]), ["a", "b"])
        self.assertEqual(self.names("--filter", "type=custom"), ["kept"])
        status, answer = self.api("POST", "/networks/prune?filters=" + '{"label":["nothing"]}'.replace('"', "%22"))
        self.assertEqual((status, answer), (200, {"NetworksDeleted": None}))
        # until: networks created before then; these are all newer.
        self.assertEqual(self.out("network", "prune", "--force", "--filter", "until=1h"), "")
        self.assertEqual(self.names("--filter", "type=custom"), ["kept"])

    def test_events(self):
        since = str(int(time.time()) - 1)
        made = self.out("network", "create", "evented")
        self.out("network", "rm", "evented")
        until = str(int(time.time()) + 1)
        events = self.out("events", "--since", since, "--until", until, "--filter", "type=network", "--format",
                          "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}}")
        mine = [line for line in events.splitlines() if made in line]
        self.assertEqual(mine, [f"create {made} evented bridge", f"destroy {made} evented bridge"])


class ContainerNetworksTest(NetworkCase):
    """A created container's networks: what inspect shows, connect and disconnect before it runs."""

    def networks(self, container):
        return self.inspect(container)["NetworkSettings"]["Networks"]

    def test_created_container_on_a_user_network(self):
        self.out("network", "create", "--subnet", "10.9.0.0/24", "net")
        self.out("create", "--name", "c1", "--network", "net", "--network-alias", "web", "--ip", "10.9.0.7",
                 IMAGE, "true")
        self.assertEqual(self.inspect("c1")["HostConfig"]["NetworkMode"], "net")
        endpoint = self.networks("c1")["net"]
        self.assertEqual(endpoint["IPAMConfig"], {"IPv4Address": "10.9.0.7"})
        self.assertEqual(endpoint["Aliases"], ["web"])
        for field in ("NetworkID", "EndpointID", "Gateway", "IPAddress", "MacAddress"):
            self.assertEqual(endpoint[field], "", field)  # nothing until it runs
        self.assertEqual(endpoint["IPPrefixLen"], 0)
        settings = self.inspect("c1")["NetworkSettings"]
        self.assertEqual((settings["IPAddress"], settings["Gateway"], settings["SandboxKey"]), ("", "", ""))
        listed = json.loads(self.out("ps", "-a", "--format", "{{json .}}", "--filter", "name=c1"))
        self.assertEqual(listed["Networks"], "net")

    def test_connect_and_disconnect_a_stopped_container(self):
        self.out("network", "create", "--subnet", "10.9.0.0/24", "net")
        self.out("network", "create", "other")
        self.out("create", "--name", "c1", "--network", "net", IMAGE, "true")
        self.expect_error(("network", "connect", "--ip", "10.9.0.9", "other", "c1"),
                          "user specified IP address is supported only when connecting to networks with user "
                          "configured subnets")
        self.out("network", "connect", "--alias", "db", "other", "c1")
        self.assertEqual(sorted(self.networks("c1")), ["net", "other"])
        self.assertEqual(self.networks("c1")["other"]["Aliases"][0], "db")
        self.out("network", "connect", "other", "c1")  # again: no change, as dockerd
        self.out("network", "disconnect", "other", "c1")
        self.assertEqual(sorted(self.networks("c1")), ["net"])
        self.expect_error(("network", "disconnect", "other", "c1"), "is not connected to the network other")
        self.expect_error(("network", "connect", "net", "nosuch"), "No such container: nosuch")
        if not ORACLE:  # dockerd 20.10 records an unknown network on a created container and fails its start
            self.expect_error(("network", "connect", "nosuch", "c1"), "network nosuch not found")
        self.expect_error(("network", "connect", "none", "c1"),
                          "container cannot be connected to multiple networks with one of the networks in private "
                          "(none) mode")

    def test_a_container_on_none_has_no_network_but_none(self):
        self.out("create", "--name", "c1", "--network", "none", IMAGE, "true")
        self.assertEqual(list(self.networks("c1")), ["none"])

    def test_bad_endpoint_settings(self):
        self.out("network", "create", "net")
        status, answer = self.raw("POST", "/containers/create", json.dumps({
            "Image": IMAGE, "NetworkingConfig": {"EndpointsConfig": {"net": {}, "none": {}}}}))
        self.assertEqual(status, 400)
        prefix = "Container cannot be connected to network endpoints: "  # then the names in Go's map order
        self.assertTrue(answer["message"].startswith(prefix), answer)
        self.assertEqual(sorted(answer["message"][len(prefix):].split(", ")), ["net", "none"])
        status, answer = self.raw("POST", "/containers/create", json.dumps({
            "Image": IMAGE, "HostConfig": {"ExtraHosts": ["foo:bar"]}}))
        self.assertEqual((status, answer), (400, {"message": 'invalid IP address in add-host: "bar"'}))


class KilnNetworkTest(NetworkCase):
    """What Kiln answers differently from dockerd, on purpose."""

    kiln_only = True

    def test_the_default_bridge_network(self):
        network = self.network("bridge")
        self.assertEqual(network["Driver"], "bridge")
        self.assertEqual(network["IPAM"]["Config"], [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}])
        self.assertEqual(network["Options"]["com.docker.network.bridge.name"], "kiln0")
        self.expect_error(("network", "rm", "bridge"), "bridge is a pre-defined network and cannot be removed")
        # The first user network takes the next default pool.
        self.out("network", "create", "first")
        self.assertEqual(self.network("first")["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16")
        # A container without --network is on the default network.
        self.out("create", "--name", "c1", IMAGE, "true")
        self.assertEqual(list(self.inspect("c1")["NetworkSettings"]["Networks"]), ["bridge"])
        status, answer = self.raw("POST", "/containers/create", json.dumps({
            "Image": IMAGE, "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}}}))
        self.assertEqual((status, answer), (400, {"message": "network-scoped alias is supported only for "
                                                             "containers in user defined networks"}))

    def test_a_vm_cannot_share_the_hosts_network(self):
        self.expect_error(("create", "--network", "host", IMAGE, "true"), 'network mode "host" is not supported')
        self.expect_error(("create", "--network", "container:other", IMAGE, "true"),
                          'network mode "container:other" is not supported')
        # An unknown network is dockerd 20.10's start error, not create's (a 404 at create makes the CLI pull).
        self.out("create", "--name", "lost", "--network", "nosuch", IMAGE, "true")
        self.assertEqual(list(self.inspect("lost")["NetworkSettings"]["Networks"]), ["nosuch"])

    def test_ipv6_is_refused_clearly(self):
        self.expect_error(("network", "create", "--ipv6", "--subnet", "fd00::/64", "v6"), "IPv6 is not supported")
        self.expect_error(("network", "create", "--subnet", "fd00::/64", "v6"), "IPv6 is not supported")
        self.assertNotIn("v6", self.names())

    def test_the_outbound_nat_subnet_is_never_handed_out(self):
        self.expect_error(("network", "create", "--subnet", "10.0.0.0/16", "x"),
                          "Pool overlaps with other one on this address space")

    def test_networks_survive_a_kilnd_restart(self):
        made = self.out("network", "create", "--subnet", "10.9.0.0/24", "--label", "k=v", "kept")
        before = self.network("kept")
        self.kilnd.kill9()
        self.kilnd.start()
        self.assertEqual(self.network("kept"), before)
        self.assertEqual(self.network("kept")["Id"], made)


class KilnRunningNetworkTest(NetworkCase):
    """Containers that run: their VMs' NICs in kilnd's network namespace."""

    kiln_only = True

    def test_running_containers_get_addresses_and_reach_each_other_by_name(self):
        self.out("network", "create", "--subnet", "10.9.0.0/24", "net")
        self.out("run", "-d", "--name", "server", "--network", "net", "--network-alias", "web", IMAGE,
                 "sleep", "600")
        self.wait_running("server")
        settings = self.inspect("server")["NetworkSettings"]
        endpoint = settings["Networks"]["net"]
        self.assertEqual(endpoint["IPAddress"], "10.9.0.2")
        self.assertEqual(endpoint["IPPrefixLen"], 24)
        self.assertEqual(endpoint["Gateway"], "10.9.0.1")
        self.assertEqual(endpoint["MacAddress"], "02:42:0a:09:00:02")
        self.assertRegex(endpoint["EndpointID"], r"^[0-9a-f]{64}$")
        self.assertIn("web", endpoint["Aliases"])
        self.assertEqual(settings["IPAddress"], "")  # the top-level fields are the default network's
        containers = self.network("net")["Containers"]
        [entry] = containers.values()
        self.assertEqual((entry["Name"], entry["IPv4Address"]), ("server", "10.9.0.2/24"))
        for target in ("server", "web"):
            pinged = self.docker("run", "--rm", "--network", "net", IMAGE, "ping", "-c", "1", "-W", "5", target,
                                 check=False)
            self.assertEqual(pinged.returncode, 0, pinged.stdout.decode() + pinged.stderr.decode())
        # A container on another network cannot reach it.
        self.out("network", "create", "elsewhere")
        pinged = self.docker("run", "--rm", "--network", "elsewhere", IMAGE, "ping", "-c", "1", "-W", "2",
                             "10.9.0.2", check=False)
        self.assertNotEqual(pinged.returncode, 0)
        self.out("stop", "-t", "0", "server")
        stopped = self.inspect("server")["NetworkSettings"]["Networks"]["net"]
        self.assertEqual((stopped["IPAddress"], stopped["EndpointID"]), ("", ""))

    def test_removing_a_network_in_use_is_refused(self):
        made = self.out("network", "create", "net")
        self.out("run", "-d", "--name", "server", "--network", "net", IMAGE, "sleep", "600")
        self.wait_running("server")
        self.expect_error(("network", "rm", "net"),
                          f"error while removing network: network net id {made} has active endpoints")
        self.out("rm", "-f", "server")
        self.out("network", "rm", "net")

    def default_gateway(self, container):
        routes = self.out("exec", container, "route", "-n").splitlines()
        gateways = [line.split()[1] for line in routes if line.startswith("0.0.0.0 ")]
        return gateways[0] if len(gateways) == 1 else f"not one default route: {routes}"

    def exec_ok(self, container, *command):
        done = self.docker("exec", container, *command, check=False)
        return done.returncode == 0, done.stdout.decode() + done.stderr.decode()

    def test_a_running_container_joins_and_leaves_networks(self):
        self.out("network", "create", "--subnet", "10.9.1.0/24", "front")
        self.out("network", "create", "--subnet", "10.9.2.0/24", "back")
        self.out("run", "-d", "--name", "db", "--network", "back", IMAGE, "sleep", "600")
        self.out("run", "-d", "--name", "app", "--network", "front", IMAGE, "sleep", "600")
        self.wait_running("db")
        self.wait_running("app")
        reached, output = self.exec_ok("app", "ping", "-c", "1", "-W", "2", "10.9.2.2")
        self.assertFalse(reached, output)

        self.out("network", "connect", "--alias", "application", "back", "app")
        endpoint = self.inspect("app")["NetworkSettings"]["Networks"]["back"]
        self.assertEqual(endpoint["IPAddress"], "10.9.2.3")
        self.assertIn("application", endpoint["Aliases"])
        self.assertEqual(sorted(entry["Name"] for entry in self.network("back")["Containers"].values()),
                         ["app", "db"])
        # By name from the container that joined (its resolver is front's, which answers back's names for it,
        # as Docker's resolver does), and by alias the other way.
        reached, output = self.exec_ok("app", "ping", "-c", "1", "-W", "5", "db")
        self.assertTrue(reached, output)
        reached, output = self.exec_ok("db", "ping", "-c", "1", "-W", "5", "application")
        self.assertTrue(reached, output)
        # Its first network still works, and still routes by default.
        reached, output = self.exec_ok("app", "ping", "-c", "1", "-W", "5", "10.9.1.1")
        self.assertTrue(reached, output)
        self.assertEqual(self.default_gateway("app"), "10.9.1.1")
        self.expect_error(("network", "connect", "back", "app"),
                          "endpoint with name app already exists in network back")

        # Leaving its first network: the default route moves to the one left, the address goes.
        self.out("network", "disconnect", "front", "app")
        self.assertNotIn("front", self.inspect("app")["NetworkSettings"]["Networks"])
        self.assertEqual(self.network("front")["Containers"], {})
        self.assertEqual(self.default_gateway("app"), "10.9.2.1")
        self.assertNotIn("10.9.1.", self.out("exec", "app", "route", "-n"))
        reached, output = self.exec_ok("app", "ping", "-c", "1", "-W", "5", "10.9.2.2")
        self.assertTrue(reached, output)

        self.out("network", "disconnect", "back", "app")
        reached, output = self.exec_ok("db", "ping", "-c", "1", "-W", "2", "10.9.2.3")
        self.assertFalse(reached, output)
        # Its three NIC slots are free again: it can join three networks while it runs, not a fourth.
        for name in ("front", "back"):
            self.out("network", "connect", name, "app")
        self.out("network", "create", "--subnet", "10.9.3.0/24", "third")
        self.out("network", "create", "fourth")
        self.out("network", "connect", "third", "app")
        self.expect_error(("network", "connect", "fourth", "app"), "has no spare NIC for network")
        self.assertEqual(sorted(self.inspect("app")["NetworkSettings"]["Networks"]), ["back", "front", "third"])
        # A restart gives it the same networks from its record.
        self.out("restart", "-t", "0", "app")
        self.wait_running("app")
        self.assertEqual(sorted(self.inspect("app")["NetworkSettings"]["Networks"]), ["back", "front", "third"])
        reached, output = self.exec_ok("app", "ping", "-c", "1", "-W", "5", "db")
        self.assertTrue(reached, output)

    def test_a_cold_booted_container_finds_each_network_on_its_own_card(self):
        # Booted, not forked: each NIC slot's device has its own MAC, and the guest finds the slot by it.
        self.out("network", "create", "--subnet", "10.9.1.0/24", "front")
        self.out("network", "create", "--subnet", "10.9.2.0/24", "back")
        self.out("run", "-d", "--name", "db", "--network", "back", IMAGE, "sleep", "600")
        self.out("run", "-d", "--name", "web", "--network", "front", IMAGE, "sleep", "600")
        self.out("create", "--name", "cold", "--label", "kiln.boot=cold", "--network", "front", IMAGE,
                 "sleep", "600")
        self.out("network", "connect", "back", "cold")
        self.out("start", "cold")
        self.wait_running("cold")
        for target in ("db", "web"):
            reached, output = self.exec_ok("cold", "ping", "-c", "1", "-W", "5", target)
            self.assertTrue(reached, target + ": " + output)
        self.assertEqual(self.default_gateway("cold"), "10.9.1.1")
        self.out("network", "disconnect", "back", "cold")
        reached, output = self.exec_ok("cold", "ping", "-c", "1", "-W", "2", "10.9.2.2")
        self.assertFalse(reached, output)


if __name__ == "__main__":
    unittest.main()

"""Traffic between containers, to published ports and out of Kiln (issue 13) through the real docker CLI. Each
container is a VM whose NIC is a tap on its network's bridge inside Kiln's own network namespace; names are
answered by kilnd's DNS server on the network's gateway; published ports by kilnd's proxy on the host. Traffic
goes only to the host's loopback and to addresses inside Kiln's namespace.

The expectations are dockerd's (KILN_DOCKER_ORACLE=unix:///path/dockerd.sock checks them against one started
in a network namespace of its own); cases that look into Kiln's namespace or reach the host's loopback from a
container are Kiln-only."""
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from container_cli_test import IMAGE, ORACLE, ContainerCase, wait_until  # noqa: E402

# Debian's static busybox has no UDP server (its nc lacks -u) and its `wget -T` crashes: UDP is served by this
# echo program (built static, bind-mounted in) and timeouts come from `timeout`.
UDP_ECHO_C = r"""
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) return 1;
  for (;;) {
    char buffer[2048] = "echo:";
    struct sockaddr_in peer;
    socklen_t length = sizeof peer;
    ssize_t n = recvfrom(fd, buffer + 5, sizeof buffer - 5, 0, (struct sockaddr *)&peer, &length);
    if (n >= 0) sendto(fd, buffer, (size_t)n + 5, 0, (struct sockaddr *)&peer, length);
  }
}
"""


def build_udp_echo(directory):
    source = os.path.join(directory, "udp_echo.c")
    with open(source, "w") as f:
        f.write(UDP_ECHO_C)
    subprocess.run(["cc", "-static", "-O2", "-o", os.path.join(directory, "udp_echo"), source], check=True)


# A web server in the container: /index.html says `text`.
def httpd_script(text, port=80):
    return f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www"


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class NetworkCase(ContainerCase):
    def network(self, *options):
        name = "net-" + uuid.uuid4().hex[:8]
        self.docker("network", "create", *options, name)
        self.addCleanup(lambda: self.run_docker("network", "rm", name))
        return name

    def kiln_namespace(self):
        return os.path.join(self.kilnd.run_dir, "net", "netns")

    def namespace_links(self):
        out = subprocess.run(["nsenter", f"--net={self.kiln_namespace()}", "ip", "-o", "link", "show"],
                             capture_output=True, text=True, check=True).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def master_of(self, link):
        """The bridge a link in Kiln's namespace is attached to, or None."""
        out = subprocess.run(["nsenter", f"--net={self.kiln_namespace()}", "ip", "-o", "link", "show", link],
                             capture_output=True, text=True, check=True).stdout.split()
        return out[out.index("master") + 1] if "master" in out else None

    def namespace_listeners(self):
        """host:port of every TCP and UDP socket listening in Kiln's namespace."""
        out = subprocess.run(["nsenter", f"--net={self.kiln_namespace()}", "ss", "-Hlntu"],
                             capture_output=True, text=True, check=True).stdout
        return [line.split()[4] for line in out.splitlines() if len(line.split()) > 4]

    def wait_http(self, url, text, timeout=60):
        def answered():
            try:
                return text in http_get(url)
            except OSError:
                return False
        wait_until(answered, f"{url} to answer", timeout=timeout)


class ContainerNetworkTest(NetworkCase):
    def test_containers_on_a_network_reach_each_other_by_name_and_alias_and_no_one_else(self):
        net = self.network()
        other = self.network()
        self.docker("run", "-d", "--name", "web", "--network", net, "--network-alias", "frontend", IMAGE,
                    "sh", "-c", httpd_script("hello-from-web"))
        self.wait_running("web")
        address = self.inspect("web")["NetworkSettings"]["Networks"][net]["IPAddress"]
        self.assertTrue(address, self.inspect("web")["NetworkSettings"])

        # By name and by alias: ping (ICMP), wget (TCP through the name server), nc.
        script = ("ping -c 1 -W 5 web >/dev/null && timeout 10 wget -q -O - http://web/index.html && "
                  "timeout 10 wget -q -O - http://frontend/index.html && "
                  "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc web 80 | tail -n 1")
        out = self.out("run", "--rm", "--network", net, IMAGE, "sh", "-c", script)
        self.assertEqual(out.split(), ["hello-from-web"] * 3)

        # The client's resolv.conf names its network's resolver; its /etc/hosts its own address.
        hosts = self.out("run", "--rm", "--network", net, "--hostname", "client", IMAGE, "cat", "/etc/hosts")
        self.assertRegex(hosts, r"\n\d+\.\d+\.\d+\.\d+\tclient(\n|$)")

        # Another network: the name is unknown there, and the address is unreachable.
        # (`; echo`: were wget the shell's last command it would be exec'd as PID 1, which timeout's signal
        # cannot end, as under Docker.)
        refused = self.out("run", "--rm", "--network", other, IMAGE, "sh", "-c",
                           f"nslookup web >/dev/null 2>&1; echo lookup=$?; "
                           f"timeout 5 wget -q -O - http://{address}/index.html; echo fetch=$?")
        self.assertIn("lookup=1", refused)
        self.assertNotIn("hello-from-web", refused)
        self.assertNotIn("fetch=0", refused)

    def test_legacy_links_give_names_and_variables_on_the_default_bridge(self):
        self.out("run", "-d", "--name", "linked-db", "-e", "FOO=1", "--expose", "5432", IMAGE, "sleep", "600")
        self.wait_running("linked-db")
        db_ip = self.inspect("linked-db")["NetworkSettings"]["IPAddress"]
        out = self.out("run", "--name", "linker", "--link", "linked-db:database", IMAGE, "sh", "-c",
                       "env | sort; cat /etc/hosts; ping -c 1 -W 5 database >/dev/null && echo reached")
        lines = out.splitlines()
        for expected in ("DATABASE_NAME=/linker/database", "DATABASE_ENV_FOO=1",
                         f"DATABASE_PORT=tcp://{db_ip}:5432", f"DATABASE_PORT_5432_TCP_ADDR={db_ip}",
                         f"{db_ip}\tdatabase linked-db", "reached"):
            self.assertIn(expected, lines)
        self.assertEqual(self.inspect("linker")["HostConfig"]["Links"], ["/linked-db:/linker/database"])
        # A link to a container that does not exist, or does not run: dockerd's words.
        failed = self.docker("create", "--link", "nosuch:x", IMAGE, check=False)
        self.assertIn("could not get container for nosuch", failed.stderr.decode())
        status, listed = self.raw("GET", "/containers/json?all=1")
        [db] = [entry for entry in listed if entry["Names"][0] == "/linked-db"]
        self.assertEqual(db["Names"], ["/linked-db", "/linker/database"])
        self.out("stop", "-t", "0", "linked-db")
        failed = self.docker("start", "linker", check=False)
        self.assertIn("Cannot link to a non running container: /linked-db AS /linker/database",
                      failed.stderr.decode())
        # docker rm --link: the link goes, both containers stay, and the linker starts without it.
        self.out("rm", "--link", "linker/database")
        self.assertIsNone(self.inspect("linker")["HostConfig"]["Links"])
        self.out("start", "linker")
        self.assertEqual(self.out("wait", "linker"), "1")  # its `ping database` fails: no link any more
        failed = self.docker("rm", "--link", "linker/nosuch", check=False)
        self.assertIn("No such container: linker/nosuch", failed.stderr.decode())

    def test_a_link_on_a_user_network_names_the_container_for_the_linker_alone(self):
        net = self.network()
        self.out("run", "-d", "--name", "linked-api", "--network", net, IMAGE, "sleep", "600")
        self.wait_running("linked-api")
        ip = self.inspect("linked-api")["NetworkSettings"]["Networks"][net]["IPAddress"]
        hosts = self.out("run", "--rm", "--network", net, "--link", "linked-api:backend", IMAGE, "cat",
                         "/etc/hosts")
        self.assertIn(f"{ip}\tbackend linked-api", hosts.splitlines())
        unlinked = self.docker("run", "--rm", "--network", net, IMAGE, "ping", "-c", "1", "-W", "2", "backend",
                               check=False)
        self.assertNotEqual(unlinked.returncode, 0)

    def test_default_bridge_gives_an_address_and_no_names(self):
        self.docker("run", "-d", "--name", "plain", IMAGE, "sh", "-c", httpd_script("on-the-bridge"))
        self.wait_running("plain")
        settings = self.inspect("plain")["NetworkSettings"]
        self.assertRegex(settings["IPAddress"], r"^172\.17\.")
        self.assertEqual(settings["Gateway"], "172.17.0.1")
        self.assertEqual(settings["Networks"]["bridge"]["IPAddress"], settings["IPAddress"])
        out = self.out("run", "--rm", IMAGE, "timeout", "10", "wget", "-q", "-O", "-",
                       f"http://{settings['IPAddress']}/index.html")
        self.assertEqual(out, "on-the-bridge")
        # `--network none`: loopback only.
        links = self.out("run", "--rm", "--network", "none", IMAGE, "sh", "-c", "ls /sys/class/net")
        self.assertEqual(links.split(), ["lo"])


class PublishedPortTest(NetworkCase):
    def test_published_tcp_and_udp_ports_answer_on_the_host(self):
        tools = tempfile.mkdtemp(prefix="kiln-udp-echo-")
        self.addCleanup(shutil.rmtree, tools, ignore_errors=True)
        os.chmod(tools, 0o755)
        build_udp_echo(tools)
        tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
        self.docker("run", "-d", "--name", "pub", "-p", f"127.0.0.1:{tcp_port}:80",
                    "-p", f"127.0.0.1:{udp_port}:9999/udp", "-v", f"{tools}:/tools:ro", IMAGE, "sh", "-c",
                    "/tools/udp_echo 9999 & " + httpd_script("published"))
        self.wait_http(f"http://127.0.0.1:{tcp_port}/index.html", "published")
        self.assertEqual(self.out("port", "pub", "80/tcp"), f"127.0.0.1:{tcp_port}")
        ports = self.inspect("pub")["NetworkSettings"]["Ports"]
        self.assertEqual(ports["80/tcp"], [{"HostIp": "127.0.0.1", "HostPort": str(tcp_port)}])

        # UDP both ways: the container's echo answers through the proxy (resent until its server listens).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.5)

            def echoed():
                client.sendto(b"udp-datagram", ("127.0.0.1", udp_port))
                try:
                    return client.recvfrom(2048)[0] == b"echo:udp-datagram"
                except socket.timeout:
                    return False
            wait_until(echoed, "the UDP echo through the published port", timeout=60, interval=0.2)

        # A second container asking for the same host port fails to start with Docker's reason.
        failed = self.docker("run", "-d", "--name", "clash", "-p", f"127.0.0.1:{tcp_port}:80", IMAGE, "sleep", "60",
                             check=False)
        self.assertNotEqual(failed.returncode, 0)
        self.assertRegex(failed.stderr.decode(), r"port is already allocated|address already in use")
        self.assertEqual(self.state("clash")["Running"], False)
        self.assertEqual(http_get(f"http://127.0.0.1:{tcp_port}/index.html").strip(), "published")

        # After the container: nothing listens on the port any more.
        self.docker("rm", "-f", "pub")
        with socket.socket() as probe:
            self.assertNotEqual(probe.connect_ex(("127.0.0.1", tcp_port)), 0)

    def test_publish_all_picks_free_host_ports_for_exposed_ports(self):
        self.docker("run", "-d", "--name", "all", "-P", "--expose", "80", IMAGE, "sh", "-c", httpd_script("any-port"))
        mapping = self.out("port", "all", "80/tcp").splitlines()[0]
        host_port = int(mapping.rsplit(":", 1)[1])
        self.assertGreater(host_port, 1024)
        self.wait_http(f"http://127.0.0.1:{host_port}/index.html", "any-port")

    def test_a_host_port_range_takes_its_first_free_port(self):
        # Three consecutive free ports; the first one held by the test.
        for _ in range(50):
            first = free_port()
            with socket.socket() as a, socket.socket() as b:
                try:
                    a.bind(("127.0.0.1", first + 1))
                    b.bind(("127.0.0.1", first + 2))
                except OSError:
                    continue
            break
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", first))
        holder.listen()
        self.docker("run", "-d", "--name", "ranged", "-p", f"127.0.0.1:{first}-{first + 2}:80", IMAGE, "sh", "-c",
                    httpd_script("ranged"))
        self.assertEqual(self.out("port", "ranged", "80/tcp"), f"127.0.0.1:{first + 1}")
        self.wait_http(f"http://127.0.0.1:{first + 1}/index.html", "ranged")
        bindings = self.inspect("ranged")["HostConfig"]["PortBindings"]["80/tcp"]
        self.assertEqual(bindings, [{"HostIp": "127.0.0.1", "HostPort": f"{first}-{first + 2}"}])


@unittest.skipIf(ORACLE, "looks into Kiln's own network namespace")
class KilnNetworkTest(NetworkCase):
    kiln_only = True

    def test_outbound_reaches_the_hosts_loopback_through_host_gateway(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"from-the-host\n")

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        port = server.server_address[1]
        out = self.out("run", "--rm", "--add-host", "host.docker.internal:host-gateway", IMAGE,
                       "timeout", "20", "wget", "-q", "-O", "-", f"http://host.docker.internal:{port}/")
        self.assertEqual(out, "from-the-host")

    def test_nothing_is_left_in_kilns_namespace_after_containers_and_networks_go(self):
        net = self.network()
        self.docker("run", "-d", "--name", "short", "--network", net, IMAGE, "sleep", "600")
        self.wait_running("short")
        network_id = self.out("network", "inspect", "--format", "{{.Id}}", net)
        address = self.inspect("short")["NetworkSettings"]["Networks"][net]["IPAddress"]
        links = self.namespace_links()
        self.assertIn("br-" + network_id[:12], links)
        self.assertTrue(any(link.startswith("ktap") for link in links), links)
        # The VM's address answers from inside Kiln's namespace, never from the host's.
        subprocess.run(["nsenter", f"--net={self.kiln_namespace()}", "busybox", "ping", "-c", "1", "-W", "5", address],
                       check=True, capture_output=True)

        gateway = self.out("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", net)
        self.assertIn(f"{gateway}:53", self.namespace_listeners())  # the network's DNS server

        self.docker("rm", "-f", "short")
        self.docker("network", "rm", net)
        links = self.namespace_links()
        # The only taps left are the warm pool's idle clones' spares (3 NIC slots each), on no bridge: once
        # its refill settles, kilnd's default 2 clones (none when it boots cold).
        pooled = 0
        if self.kilnd.boot != "cold":
            pooled = wait_until(lambda: sum(t.get("pooled", 0) for t in self.kilnd.ok("GET", "/v1/templates")) == 2
                                and 2, "the warm pool to hold 2 idle clones", timeout=120)
            links = self.namespace_links()
        taps = [link for link in links if link.startswith("ktap")]
        self.assertEqual(len(taps), 3 * pooled, (links, pooled))
        self.assertFalse([tap for tap in taps if self.master_of(tap)], links)
        self.assertNotIn("br-" + network_id[:12], links)
        self.assertNotIn(f"{gateway}:53", self.namespace_listeners())

    def test_published_ports_and_names_survive_a_kilnd_restart(self):
        net = self.network()
        port = free_port()
        self.docker("run", "-d", "--name", "kept", "--network", net, "-p", f"127.0.0.1:{port}:80", IMAGE, "sh",
                    "-c", httpd_script("still-here"))
        self.wait_http(f"http://127.0.0.1:{port}/index.html", "still-here")
        # A network it joined while running is on its record too.
        joined = self.network()
        self.out("network", "connect", "--alias", "late", joined, "kept")
        self.kilnd.kill9()
        self.kilnd.start()
        # The VM ran on; the restarted kilnd listens on its port again and its names resolve again.
        self.wait_http(f"http://127.0.0.1:{port}/index.html", "still-here", timeout=30)
        out = self.out("run", "--rm", "--network", net, IMAGE, "timeout", "20", "wget", "-q", "-O", "-",
                       "http://kept/index.html")
        self.assertEqual(out, "still-here")
        out = self.out("run", "--rm", "--network", joined, IMAGE, "timeout", "20", "wget", "-q", "-O", "-",
                       "http://late/index.html")
        self.assertEqual(out, "still-here")
        self.out("network", "disconnect", joined, "kept")
        self.docker("rm", "-f", "kept")
        with socket.socket() as probe:
            self.assertNotEqual(probe.connect_ex(("127.0.0.1", port)), 0)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""bench/net: what a published port costs: TCP throughput host -> container through the port proxy, and the
rate of new connections through it; TCP throughput container -> container on a user-defined network, and
container -> the host (outbound). For dockerd + runc (its userland proxy, docker-proxy, its bridges) and for
kilnd (its port proxy, src/net/port_proxy.h; VMs' taps on a bridge in Kiln's namespace; slirp4netns).

Not a test (not registered with CTest, asserts nothing about timings); it prints figures that
docs/benchmarks.md records. Per-run figures go to stderr, the summary table to stdout.

  1. runc: dockerd in a network namespace of its own (`unshare --net`), with its default bridge inside that
     namespace (nothing is configured in the host's namespace), --iptables=false and --userland-proxy=true so
     every published connection goes through docker-proxy, as it does for loopback clients by default. The
     clients run inside that namespace too (nsenter), so "the host" of runc is its namespace.
     kiln: a kilnd this program starts (--kilnd, default build/release/bin/kilnd unless the dev build's is
     newer; its guest kernel linked: scripts/link-guest-kernel.sh BUILD_DIR), or with --kilnd-socket SOCK
     the Docker API socket of one already running; its clients run in the host's namespace.
  2. Each system runs busybox containers from the same imported image:
       sink : `nc -l -p 5001 > /dev/null` in a loop, published on 127.0.0.1 (a free port)
       web  : `httpd -f -p 80` serving a 3-byte file, published on 127.0.0.1 (a free port)
       recv : `tcp_stream recv` (bench/net/tcp_stream.c, built static here and bind-mounted) on the network
              netbench-net (`docker network create`)
       send : `sleep`, on netbench-net too, with --add-host host.docker.internal:host-gateway
  3. throughput: --runs times, one connection sends --mib MiB, half-closes, and waits for the proxy's EOF;
     MB/s = bytes / (first byte .. EOF). A run whose connection is refused (the loop's next `nc` not yet
     listening) is retried, not counted. For runc also "direct": the same to the container's address, no
     proxy (the bridge alone).
  4. connections: --connections HTTP/1.0 GETs (connect, request, read to EOF), by --parallel clients;
     connections per second of wall time, and the median / p99 time of one.
  5. ctr->ctr: --runs times (after one not counted), `docker exec send tcp_stream send` sends --ctr-mib MiB to
     recv's address on netbench-net; recv times first byte .. EOF and answers bytes and seconds, checked
     against what was sent.
  6. outbound: the same from send to a `tcp_stream recv` this program runs on "the host", addressed as
     host.docker.internal (the address --add-host ...:host-gateway wrote into send's /etc/hosts). Kiln: the
     NAT's gateway 10.0.2.2, which slirp4netns forwards to the host's 127.0.0.1, where the receiver listens.
     runc: host-gateway is its default bridge's address in dockerd's namespace, where the receiver listens
     (a container reaching its host through the bridge; dockerd's namespace has no route out of it).

  --proxies: the proxies alone, in the host's namespace on loopback, no container: a sink (a process of this
     program) and busybox httpd on 127.0.0.1, reached directly, through docker-proxy, and through Kiln's
     PortProxy (kiln_port_proxy_tool, bench/net/port_proxy_tool.cc; use a release build: --proxy-tool).

Every daemon and container this program starts is removed at exit, also on failure or SIGINT/SIGTERM. Needs
root, Debian's docker.io 20.10, busybox-static, cc with a static libc. Python 3 stdlib only.
"""
import argparse
import concurrent.futures
import json
import os
import multiprocessing
import shutil
import signal
import socket
import tempfile
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../common"))
sys.path.insert(0, os.path.join(HERE, "../../tests/support"))
import docker_daemons  # noqa: E402
from kiln_test_support import release_kiln_network  # noqa: E402
from docker_daemons import (DOCKER_CLI, IMAGE, Daemon, Dockerd, Kilnd, busybox_tar, default_kilnd,  # noqa: E402
                            kill_all, log, pids_naming, scratch_workspace, unmount_under, wait_until)

SINK_PORT = 5001
WEB_PORT = 80
STREAM_PORT = 5001
CHUNK = 256 * 1024
CONTAINERS = ("netbench-sink", "netbench-web", "netbench-recv", "netbench-send")
NETWORK = "netbench-net"


# --- clients (run in the namespace where the published port is: `--client ...`) -----------------------------
def client_throughput(host, port, size, runs):
    """MB/s of `runs` transfers of `size` bytes to host:port (a sink that reads to EOF, then closes)."""
    payload = b"\0" * CHUNK
    results = []
    while len(results) < runs:
        for attempt in range(200):
            try:
                with socket.create_connection((host, port), timeout=60) as s:
                    start = time.monotonic()
                    sent = 0
                    while sent < size:
                        s.sendall(payload)
                        sent += len(payload)
                    s.shutdown(socket.SHUT_WR)
                    if s.recv(1) != b"":
                        raise RuntimeError("the sink answered")
                    elapsed = time.monotonic() - start
                break
            except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
                time.sleep(0.05)  # the sink's next `nc -l` is not listening yet
        else:
            raise RuntimeError(f"{host}:{port}: no sink after 200 attempts")
        results.append(sent / elapsed / 1e6)
    return results


def one_get(host, port):
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not (data.startswith(b"HTTP/1.") and data[8:13] == b" 200 "):
        raise RuntimeError(f"{host}:{port}: unexpected answer {data[:80]!r}")
    return time.monotonic() - start


def client_connections(host, port, count, parallel):
    wait_until(lambda: _answers(host, port), f"httpd at {host}:{port}", 60)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        times = list(pool.map(lambda _: one_get(host, port), range(count)))
    wall = time.monotonic() - start
    times.sort()
    return {"per_second": count / wall, "median_ms": statistics.median(times) * 1000,
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000}


def _answers(host, port):
    try:
        one_get(host, port)
        return True
    except OSError:
        return False


def sink_server(listener):
    """Reads each connection to EOF, then closes it (a process of its own: the client's GIL is not its)."""
    buffer = bytearray(1 << 20)
    while True:
        connection, _ = listener.accept()
        with connection:
            while connection.recv_into(buffer):
                pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port):
    def connects():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return True
        except OSError:
            return False
    wait_until(connects, f"a listener on 127.0.0.1:{port}", 30)


def start_docker_proxy(port, target):
    """docker-proxy as dockerd 20.10 starts it: it reports "0\n" (or "1\n" and the error) on fd 3, then
    closes it, so fd 3 must be that pipe."""
    read_end, write_end = os.pipe()

    def as_fd_3():
        os.dup2(write_end, 3)
    process = subprocess.Popen(["/usr/sbin/docker-proxy", "-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port",
                                str(port), "-container-ip", "127.0.0.1", "-container-port", str(target)],
                               preexec_fn=as_fd_3, pass_fds=(3,))  # closing the others comes after preexec_fn
    os.close(write_end)
    with os.fdopen(read_end, "rb") as signal_pipe:
        status = signal_pipe.read()
    if not status.startswith(b"0"):
        raise RuntimeError(f"docker-proxy: {status.decode(errors='replace')}")
    return process


def measure_proxies(args):
    """direct / docker-proxy / Kiln's PortProxy, each to the same loopback sink and httpd."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    sink_port = listener.getsockname()[1]
    sink = multiprocessing.Process(target=sink_server, args=(listener,), daemon=True)
    sink.start()
    www = tempfile.mkdtemp(prefix="knb-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("ok\n")
    web_port = free_port()
    processes = [subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{web_port}", "-h", www])]
    try:
        wait_listening(web_port)
        routes = {"direct": (sink_port, web_port)}
        for name in ("docker-proxy", "kiln-proxy"):
            ports = []
            for target in (sink_port, web_port):
                if name == "docker-proxy":
                    port = free_port()
                    processes.append(start_docker_proxy(port, target))
                else:
                    tool = subprocess.Popen([args.proxy_tool, "tcp", "127.0.0.1", "127.0.0.1", str(target)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                    processes.append(tool)
                    port = int(tool.stdout.readline())
                wait_listening(port)
                ports.append(port)
            routes[name] = tuple(ports)
        results = {}
        for name, (sink_at, web_at) in routes.items():
            log(f"{name}: throughput to 127.0.0.1:{sink_at}, connections to 127.0.0.1:{web_at}")
            results[name] = {"proxy MB/s": client_throughput("127.0.0.1", sink_at, args.mib << 20, args.runs),
                             "connections": client_connections("127.0.0.1", web_at, args.connections,
                                                               args.parallel)}
            log(f"{name}: {results[name]}")
        return results
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        sink.terminate()
        shutil.rmtree(www, ignore_errors=True)


def run_client(prefix, *args):
    """Runs this program's --client mode under `prefix` (nsenter into a namespace, or nothing); its JSON."""
    command = [*prefix, sys.executable, os.path.abspath(__file__), "--client", *map(str, args)]
    result = subprocess.run(command, capture_output=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"client {' '.join(map(str, args))} exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace').strip()[-2000:]}")
    return json.loads(result.stdout)


# --- daemons ----------------------------------------------------------------------------------------------
class NetnsDockerd(Dockerd):
    """dockerd in a network namespace of its own, with its default bridge there and docker-proxy for every
    published port."""

    def start(self):
        config_path = os.path.join(self.dir, "daemon.json")
        with open(config_path, "w") as f:
            json.dump(self.config, f)
        self.pid_path = os.path.join(self.dir, "dockerd.pid")
        command = ["unshare", "--net", "--fork", "--kill-child=SIGTERM", "dockerd", "--config-file", config_path,
                   "--iptables=false", "--ip-masq=false", "--userland-proxy=true",
                   "--data-root", os.path.join(self.dir, "root"), "--exec-root", self.exec_root,
                   "--pidfile", self.pid_path, "-H", "unix://" + self.socket]
        log(f"{self.name}: {' '.join(command)}")
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            preexec_fn=docker_daemons._die_with_parent(signal.SIGTERM))
        self.wait_api(self.process)
        with open(self.pid_path) as f:
            self.dockerd_pid = int(f.read().strip())
        subprocess.run(self.nsenter() + ["ip", "link", "set", "lo", "up"], check=True)

    def nsenter(self):
        return ["nsenter", f"--net=/proc/{self.dockerd_pid}/ns/net"]

    def stop(self):
        try:
            self.remove_all_containers()
        except (OSError, subprocess.SubprocessError) as e:
            log(f"{self.name}: removing containers: {e}")
        if getattr(self, "dockerd_pid", None):
            kill_all([self.dockerd_pid], signal.SIGTERM)
        if self.process and self.process.poll() is None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        kill_all(pids_naming(self.dir))
        unmount_under(self.dir)


class OwnKilnd(Kilnd):
    """A kilnd this program starts and stops, with the network it leaves on purpose (its NAT, its namespace);
    its clients run in the host's namespace."""

    def nsenter(self):
        return []

    def stop(self):
        super().stop()
        release_kiln_network(self.run_dir)


class ExistingDaemon(Daemon):
    """A Docker API server this program does not own (a running kilnd): only its containers are removed."""

    def __init__(self, name, work, socket_path):
        super().__init__(name, work)
        self.socket = socket_path
        self.log_path = os.path.join(self.dir, "none.log")

    def nsenter(self):
        return []

    def stop(self):
        subprocess.run([DOCKER_CLI, "rm", "-f", *CONTAINERS], capture_output=True, env=self.env(), timeout=300)
        subprocess.run([DOCKER_CLI, "network", "rm", NETWORK], capture_output=True, env=self.env(), timeout=120)


def published_port(daemon, container, port):
    out = daemon.docker("port", container, f"{port}/tcp").strip().splitlines()[0]
    return int(out.rsplit(":", 1)[1])


def build_tcp_stream(directory):
    """bench/net/tcp_stream.c, static (it runs in busybox containers and in any namespace): its folder."""
    os.makedirs(directory)
    subprocess.run(["cc", "-static", "-O2", "-o", os.path.join(directory, "tcp_stream"),
                    os.path.join(HERE, "tcp_stream.c")], check=True, timeout=120)
    return directory


def stream_runs(daemon, ip, port, size, runs):
    """MB/s of `runs` streams of `size` bytes from the send container to a tcp_stream receiver at ip:port, as
    the receiver timed them (first byte .. EOF), after one stream not counted: a VM just forked pays for its
    first (TCG translating the guest's network paths, guest pages touched for the first time)."""
    results = []
    for _ in range(runs + 1):
        out = daemon.docker("exec", "netbench-send", "/tb/tcp_stream", "send", ip, str(port), str(size),
                            timeout=300).split()
        sent, received, seconds = int(out[0]), int(out[1]), float(out[2])
        if sent != size or received != size:
            raise RuntimeError(f"{daemon.name}: sent {sent} bytes, the receiver got {received} of {size}")
        results.append(received / seconds / 1e6)
        log(f"{daemon.name}: {received} bytes to {ip}:{port} in {seconds:.3f} s: {results[-1]:.0f} MB/s"
            f"{' (warm-up, not counted)' if len(results) == 1 else ''}")
    return results[1:]


def host_gateway(daemon):
    """The address --add-host host.docker.internal:host-gateway wrote into the send container's /etc/hosts."""
    for line in daemon.docker("exec", "netbench-send", "cat", "/etc/hosts").splitlines():
        fields = line.split()
        if fields[1:2] == ["host.docker.internal"]:
            return fields[0]
    raise RuntimeError(f"{daemon.name}: no host.docker.internal in the send container's /etc/hosts")


def measure_streams(daemon, args, tools):
    """container -> container on a user-defined network, and container -> the host (outbound)."""
    size = args.ctr_mib << 20
    daemon.docker("network", "create", NETWORK)
    mount = ["-v", f"{tools}:/tb:ro"]
    daemon.docker("run", "-d", "--name", "netbench-recv", "--network", NETWORK, *mount, IMAGE,
                  "/tb/tcp_stream", "recv", "0.0.0.0", str(STREAM_PORT))
    daemon.docker("run", "-d", "--name", "netbench-send", "--network", NETWORK, *mount,
                  "--add-host", "host.docker.internal:host-gateway", IMAGE, "sleep", "3600")
    figures = {}
    ip = daemon.docker("inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}',
                       "netbench-recv").strip()
    log(f"{daemon.name}: container -> container, {ip}:{STREAM_PORT} on {NETWORK}")
    figures["ctr->ctr MB/s"] = stream_runs(daemon, ip, STREAM_PORT, size, args.runs)

    gateway = host_gateway(daemon)
    # Where "the host" listens: Kiln's NAT forwards its gateway to the host's loopback; dockerd's host-gateway
    # is its default bridge's address, in its own namespace.
    listen_ip = gateway if isinstance(daemon, NetnsDockerd) else "127.0.0.1"
    port = free_port()
    receiver = subprocess.Popen([*daemon.nsenter(), os.path.join(tools, "tcp_stream"), "recv", listen_ip,
                                 str(port)], preexec_fn=docker_daemons._die_with_parent(signal.SIGKILL))
    try:
        log(f"{daemon.name}: outbound to host.docker.internal = {gateway}:{port} (receiver on {listen_ip})")
        figures["outbound MB/s"] = stream_runs(daemon, gateway, port, size, args.runs)
    finally:
        receiver.kill()
        receiver.wait()
    return figures


def measure(daemon, args, direct, tools):
    image = IMAGE
    daemon.docker("run", "-d", "--name", "netbench-sink", "-p", f"127.0.0.1::{SINK_PORT}", image, "sh", "-c",
                  f"while :; do nc -l -p {SINK_PORT} >/dev/null </dev/null; done")
    daemon.docker("run", "-d", "--name", "netbench-web", "-p", f"127.0.0.1::{WEB_PORT}", image, "sh", "-c",
                  f"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p {WEB_PORT} -h /www")
    sink = published_port(daemon, "netbench-sink", SINK_PORT)
    web = published_port(daemon, "netbench-web", WEB_PORT)
    size = args.mib << 20
    figures = {}
    log(f"{daemon.name}: throughput through the proxy, 127.0.0.1:{sink}")
    figures["proxy MB/s"] = run_client(daemon.nsenter(), "throughput", "127.0.0.1", sink, size, args.runs)
    if direct:
        ip = daemon.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "netbench-sink").strip()
        log(f"{daemon.name}: throughput direct to {ip}:{SINK_PORT}")
        figures["direct MB/s"] = run_client(daemon.nsenter(), "throughput", ip, SINK_PORT, size, args.runs)
    log(f"{daemon.name}: connections through the proxy, 127.0.0.1:{web}")
    figures["connections"] = run_client(daemon.nsenter(), "connections", "127.0.0.1", web, args.connections,
                                        args.parallel)
    figures.update(measure_streams(daemon, args, tools))
    for key, value in figures.items():
        log(f"{daemon.name}: {key}: {value}")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="MiB per throughput run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--ctr-mib", type=int, default=512, help="MiB per container -> container / outbound run")
    parser.add_argument("--kilnd", default=default_kilnd(), help="kilnd binary (default build/release, else dev)")
    parser.add_argument("--kilnd-socket", help="measure the kilnd already serving this Docker API socket instead")
    parser.add_argument("--no-runc", action="store_true", help="measure only kilnd")
    parser.add_argument("--no-kiln", action="store_true", help="measure only dockerd + runc")
    parser.add_argument("--proxies", action="store_true",
                        help="only the proxies on loopback: direct, docker-proxy, Kiln's PortProxy")
    parser.add_argument("--proxy-tool",
                        default=os.path.join(docker_daemons.REPO, "build/release/bin/kiln_port_proxy_tool"),
                        help="kiln_port_proxy_tool (a release build: the dev build has sanitizers)")
    parser.add_argument("--client", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        mode, host, port, *rest = args.client
        if mode == "throughput":
            print(json.dumps(client_throughput(host, int(port), int(rest[0]), int(rest[1]))))
        else:
            print(json.dumps(client_connections(host, int(port), int(rest[0]), int(rest[1]))))
        return

    if args.proxies:
        results = measure_proxies(args)
        print(f"# bench/net --proxies: loopback, {args.runs} x {args.mib} MiB, {args.connections} connections by "
              f"{args.parallel} clients; {os.uname().release}, {os.cpu_count()} CPUs")
        print(f"{'path':<14} {'MB/s median':>12} {'min':>8} {'max':>8} {'conn/s':>8} {'median ms':>10} {'p99 ms':>8}")
        for name, figures in results.items():
            runs, connections = figures["proxy MB/s"], figures["connections"]
            print(f"{name:<14} {statistics.median(runs):>12.0f} {min(runs):>8.0f} {max(runs):>8.0f} "
                  f"{connections['per_second']:>8.0f} {connections['median_ms']:>10.2f} {connections['p99_ms']:>8.2f}")
        return

    daemons = {}
    work = scratch_workspace("knb-", daemons)
    # The image the containers run: busybox with nc and httpd besides the common applets.
    docker_daemons.APPLETS = tuple(docker_daemons.APPLETS) + ("nc", "httpd")
    image_tar = busybox_tar()
    tools = build_tcp_stream(os.path.join(work, "tools"))
    if not args.no_runc:
        daemons["runc"] = NetnsDockerd("runc", work)
    if args.kilnd_socket:
        daemons["kiln"] = ExistingDaemon("kiln", work, args.kilnd_socket)
    elif not args.no_kiln:
        daemons["kiln"] = OwnKilnd("kiln", work, args.kilnd)
    results = {}
    for name, daemon in daemons.items():
        try:
            if not isinstance(daemon, ExistingDaemon):
                daemon.start()
            daemon.docker("import", "-", IMAGE, input=image_tar)
            results[name] = measure(daemon, args, isinstance(daemon, NetnsDockerd), tools)
        except Exception as e:  # noqa: BLE001 — report it, measure the others
            log(f"{name}: {e}")
            results[name] = {"error": str(e)}
        finally:
            daemon.stop()

    print(f"# bench/net: {args.runs} runs of {args.mib} MiB through the proxies and direct, of {args.ctr_mib} MiB "
          f"ctr->ctr and outbound; {args.connections} connections by {args.parallel} clients; "
          f"{os.uname().release}, {os.cpu_count()} CPUs")
    print(f"{'system':<8} {'path':<10} {'MB/s median':>12} {'min':>8} {'max':>8} {'conn/s':>8} "
          f"{'median ms':>10} {'p99 ms':>8}")
    paths = (("proxy MB/s", "proxy"), ("direct MB/s", "direct"), ("ctr->ctr MB/s", "ctr->ctr"),
             ("outbound MB/s", "outbound"))
    for name, figures in results.items():
        if "error" in figures:
            print(f"{name:<8} error: {figures['error']}")
            continue
        for key, path in paths:
            if key not in figures:
                continue
            runs = figures[key]
            connections = figures["connections"] if path == "proxy" else None
            line = f"{name:<8} {path:<10} {statistics.median(runs):>12.0f} {min(runs):>8.0f} {max(runs):>8.0f}"
            if connections:
                line += (f" {connections['per_second']:>8.0f} {connections['median_ms']:>10.2f}"
                         f" {connections['p99_ms']:>8.2f}")
            print(line)
    runc, kiln = results.get("runc", {}), results.get("kiln", {})
    for key, path in paths:
        if key in runc and key in kiln:
            print(f"kiln/runc {path:<10} {statistics.median(kiln[key]) / statistics.median(runc[key]):.2f}")
    if "connections" in runc and "connections" in kiln:
        print(f"kiln/runc conn/s      {kiln['connections']['per_second'] / runc['connections']['per_second']:.2f}")


if __name__ == "__main__":
    main()

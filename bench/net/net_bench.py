#!/usr/bin/env python3
"""bench/net: what a published port costs: TCP throughput host -> container through the port proxy, and the
rate of new connections through it, for dockerd + runc (its userland proxy, docker-proxy) and, with
--kilnd-socket, for a running kilnd (its port proxy, src/net/port_proxy.h).

Not a test (not registered with CTest, asserts nothing about timings); it prints figures that
docs/benchmarks.md records. Per-run figures go to stderr, the summary table to stdout.

  1. runc: dockerd in a network namespace of its own (`unshare --net`), with its default bridge inside that
     namespace (nothing is configured in the host's namespace), --iptables=false and --userland-proxy=true so
     every published connection goes through docker-proxy, as it does for loopback clients by default. The
     clients run inside that namespace too (nsenter), so "the host" of runc is its namespace.
     kiln (--kilnd-socket SOCK): the Docker API socket of a kilnd already running (the bench does not start
     it: networking needs the lead's integration); its clients run in the host's namespace.
  2. Each system runs two busybox containers from the same imported image:
       sink : `nc -l -p 5001 > /dev/null` in a loop, published on 127.0.0.1 (a free port)
       web  : `httpd -f -p 80` serving a 3-byte file, published on 127.0.0.1 (a free port)
  3. throughput: --runs times, one connection sends --mib MiB, half-closes, and waits for the proxy's EOF;
     MB/s = bytes / (first byte .. EOF). A run whose connection is refused (the loop's next `nc` not yet
     listening) is retried, not counted. For runc also "direct": the same to the container's address, no
     proxy (the bridge alone).
  4. connections: --connections HTTP/1.0 GETs (connect, request, read to EOF), by --parallel clients;
     connections per second of wall time, and the median / p99 time of one.

  --proxies: the proxies alone, in the host's namespace on loopback, no container: a sink (a process of this
     program) and busybox httpd on 127.0.0.1, reached directly, through docker-proxy, and through Kiln's
     PortProxy (kiln_port_proxy_tool, bench/net/port_proxy_tool.cc; use a release build: --proxy-tool).

Every daemon and container this program starts is removed at exit, also on failure or SIGINT/SIGTERM. Needs
root, Debian's docker.io 20.10, busybox-static. Python 3 stdlib only.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../common"))
import docker_daemons  # noqa: E402
from docker_daemons import (DOCKER_CLI, IMAGE, Daemon, Dockerd, busybox_tar, kill_all, log,  # noqa: E402
                            pids_naming, scratch_workspace, unmount_under, wait_until)

SINK_PORT = 5001
WEB_PORT = 80
CHUNK = 256 * 1024


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


class ExistingDaemon(Daemon):
    """A Docker API server this program does not own (a running kilnd): only its containers are removed."""

    def __init__(self, name, work, socket_path):
        super().__init__(name, work)
        self.socket = socket_path
        self.log_path = os.path.join(self.dir, "none.log")

    def nsenter(self):
        return []

    def stop(self):
        for name in ("netbench-sink", "netbench-web"):
            subprocess.run([DOCKER_CLI, "rm", "-f", name], capture_output=True, env=self.env(), timeout=300)


def published_port(daemon, container, port):
    out = daemon.docker("port", container, f"{port}/tcp").strip().splitlines()[0]
    return int(out.rsplit(":", 1)[1])


def measure(daemon, args, direct):
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
    for key, value in figures.items():
        log(f"{daemon.name}: {key}: {value}")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="MiB per throughput run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--kilnd-socket", help="the Docker API socket of a running kilnd to measure as well")
    parser.add_argument("--no-runc", action="store_true", help="measure only the kilnd of --kilnd-socket")
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
    if not args.no_runc:
        daemons["runc"] = NetnsDockerd("runc", work)
    if args.kilnd_socket:
        daemons["kiln"] = ExistingDaemon("kiln", work, args.kilnd_socket)
    results = {}
    for name, daemon in daemons.items():
        try:
            if isinstance(daemon, NetnsDockerd):
                daemon.start()
            daemon.docker("import", "-", IMAGE, input=image_tar)
            results[name] = measure(daemon, args, direct=isinstance(daemon, NetnsDockerd))
        except Exception as e:  # noqa: BLE001 — report it, measure the others
            log(f"{name}: {e}")
            results[name] = {"error": str(e)}
        finally:
            daemon.stop()

    print(f"# bench/net: {args.runs} x {args.mib} MiB per throughput figure, {args.connections} connections by "
          f"{args.parallel} clients; {os.uname().release}, {os.cpu_count()} CPUs")
    print(f"{'system':<8} {'path':<10} {'MB/s median':>12} {'min':>8} {'max':>8} {'conn/s':>8} "
          f"{'median ms':>10} {'p99 ms':>8}")
    for name, figures in results.items():
        if "error" in figures:
            print(f"{name:<8} error: {figures['error']}")
            continue
        for key, path in (("proxy MB/s", "proxy"), ("direct MB/s", "direct")):
            if key not in figures:
                continue
            runs = figures[key]
            connections = figures["connections"] if path == "proxy" else None
            line = f"{name:<8} {path:<10} {statistics.median(runs):>12.0f} {min(runs):>8.0f} {max(runs):>8.0f}"
            if connections:
                line += (f" {connections['per_second']:>8.0f} {connections['median_ms']:>10.2f}"
                         f" {connections['p99_ms']:>8.2f}")
            print(line)


if __name__ == "__main__":
    main()

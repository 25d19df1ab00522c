#!/usr/bin/env python3
"""bench/image: pull + unpack of a ~100 MiB Debian image from a loopback registry, Kiln vs skopeo+umoci.

Not a test (not registered with CTest, asserts nothing about timings); it prints figures that
docs/benchmarks.md records.

  1. Builds a Debian bookworm minbase userland once with debootstrap (cached as a tar under --cache-dir),
     turns it into a one-layer (gzip) OCI image with umoci and pushes it with skopeo to Debian's
     `docker-registry` on 127.0.0.1:<random free port>.
  2. --runs times, each from a cold store (fresh directories; the page cache is NOT dropped):
       kiln : kiln image pull REF  +  kiln image rootfs REF  (pull, unpack, EROFS), against a kilnd started
              (not timed) on a FRESH --root for the run
       peer : skopeo copy docker://REF oci:FRESH/layout:b  +  umoci unpack --image FRESH/layout:b FRESH/bundle
     and prints median/min/max of each step and of the totals, and the ratio kiln/peer.

Needs root (debootstrap, umoci unpack/repack, kiln's layer application with ownership), debootstrap,
umoci, skopeo, docker-registry, erofs-utils. Python 3 stdlib only.
"""
import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE_REPO, IMAGE_TAG = "debian", "bookworm"
CACHE_NAME = "debootstrap-bookworm-minbase.tar"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG(SIGKILL): the registry never outlives this program.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, **kw)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {result.returncode}:\n"
                           f"{result.stdout.decode(errors='replace')}\n{result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def debian_mirror():
    """The URIs: of the stanza whose Suites: has a bare suite (bookworm, not -security/-updates)."""
    path = "/etc/apt/sources.list.d/debian.sources"
    if os.path.exists(path):
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.lstrip().startswith("#"):
                        key, value = line.split(":", 1)
                        fields[key.strip().lower()] = value.split()
                suites = fields.get("suites", [])
                if fields.get("uris") and any("-" not in s and "/" not in s for s in suites):
                    return fields["uris"][0]
    with contextlib.suppress(OSError), open("/etc/apt/sources.list") as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                rest = [p for p in parts[1:] if not p.startswith("[")]
                if len(rest) >= 2 and "-" not in rest[1] and "/" not in rest[1]:
                    return rest[0]
    return "http://deb.debian.org/debian"


class Userland:
    """debootstrap --variant=minbase bookworm, once; cached as a tar. Started in the background."""

    def __init__(self, cache_dir, mirror):
        self.tar = os.path.join(cache_dir, CACHE_NAME)
        self.process = None
        if os.path.exists(self.tar):
            log(f"userland: cached {self.tar}")
            return
        os.makedirs(cache_dir, exist_ok=True)
        self.target = tempfile.mkdtemp(prefix="debootstrap-", dir=cache_dir)
        self.log_path = os.path.join(cache_dir, "debootstrap.log")
        log(f"userland: debootstrap --variant=minbase bookworm from {mirror} (minutes; log {self.log_path})")
        self.process = subprocess.Popen(["debootstrap", "--variant=minbase", IMAGE_TAG, self.target, mirror],
                                        stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)

    def wait(self):
        if self.process is None:
            return self.tar
        if self.process.wait() != 0:
            raise RuntimeError(f"debootstrap failed, see {self.log_path}")
        partial = self.tar + ".partial"
        run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", self.target, "-cf", partial, "."])
        os.rename(partial, self.tar)
        shutil.rmtree(self.target)
        self.process = None
        return self.tar


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, workdir):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        config = os.path.join(workdir, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {os.path.join(workdir, 'storage')}\n"
                    f"http:\n  addr: {self.address}\n  secret: kiln-bench\n")
        self.log = open(os.path.join(workdir, "registry.log"), "wb")
        self.process = subprocess.Popen(["docker-registry", "serve", config], stdout=self.log,
                                        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry: nothing listens on {self.port}")
                time.sleep(0.05)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
        self.log.close()


def tree_bytes(path):
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += st.st_size
    return total


def build_image(tar, workdir):
    """One-layer OCI image (gzip) from the userland tar; returns (layout, compressed bytes, unpacked bytes)."""
    layout = os.path.join(workdir, "oci")
    bundle = os.path.join(workdir, "build-bundle")
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:{IMAGE_TAG}"])
    run(["umoci", "unpack", "--image", f"{layout}:{IMAGE_TAG}", bundle])
    rootfs = os.path.join(bundle, "rootfs")
    # As Docker's debian images (debuerreotype): no device nodes in /dev, nothing in /proc or /sys, no apt
    # lists or package caches (~80 MiB of the debootstrap tree).
    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", rootfs, "-xpf", tar,
         "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./var/lib/apt/lists/*",
         "--exclude=./var/cache/apt/*"])
    unpacked = tree_bytes(rootfs)
    run(["umoci", "repack", "--image", f"{layout}:{IMAGE_TAG}", bundle])
    run(["umoci", "config", "--image", f"{layout}:{IMAGE_TAG}", "--config.cmd", "/bin/bash",
         "--os", "linux", "--architecture", "amd64"])
    run(["umoci", "gc", "--layout", layout])
    shutil.rmtree(bundle)
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    [desc] = [d for d in index["manifests"]
              if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == IMAGE_TAG]
    with open(os.path.join(layout, "blobs", *desc["digest"].split(":"))) as f:
        manifest = json.load(f)
    compressed = sum(layer["size"] for layer in manifest["layers"])
    return layout, compressed, unpacked, len(manifest["layers"])


def timed(cmd, env):
    start = time.monotonic()
    run(cmd, env=env)
    return time.monotonic() - start


@contextlib.contextmanager
def kilnd_on(kilnd, directory, env):
    """A kilnd with its root and run dir under `directory`; yields its -H address, stops it afterwards."""
    run_dir = os.path.join(directory, "run")
    subprocess.run([kilnd, "--detach", "--root", os.path.join(directory, "kiln-root"), "--run-dir", run_dir],
                   check=True, env=env)
    try:
        yield "unix://" + os.path.join(run_dir, "kiln.sock")
    finally:
        with open(os.path.join(run_dir, "kilnd.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)


def default_kiln():
    release = os.path.join(REPO, "build/release/bin/kiln")
    return release if os.path.exists(release) else os.path.join(REPO, "build/dev/bin/kiln")


def fmt(values):
    return f"{statistics.median(values):7.2f} {min(values):7.2f} {max(values):7.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kiln", default=default_kiln(), help="kiln binary (default: build/release, else build/dev)")
    parser.add_argument("--cache-dir", default="/var/cache/kiln/bench", help="where the debootstrap tar is kept")
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: from /etc/apt sources)")
    parser.add_argument("--workdir", default="/var/tmp", help="parent of the scratch directory (store, layouts)")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args()

    userland = Userland(args.cache_dir, args.mirror or debian_mirror())  # first: it takes minutes
    kiln = os.path.abspath(args.kiln)
    build = "release" if "/build/release/" in kiln else "dev (ASan, debug)" if "/build/dev/" in kiln else "custom"
    log(f"kiln: {kiln} [{build}]")
    scratch = tempfile.mkdtemp(prefix="kiln-image-bench-", dir=args.workdir)
    registry = None
    try:
        registry = Registry(os.path.join(scratch))
        tar = userland.wait()
        log("image: building the OCI layout and pushing it")
        layout, compressed, unpacked, nlayers = build_image(tar, scratch)
        ref = f"{registry.address}/{IMAGE_REPO}:{IMAGE_TAG}"
        run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{IMAGE_TAG}", f"docker://{ref}"])
        env = dict(os.environ, DOCKER_CONFIG=os.path.join(scratch, "docker-config"), TMPDIR=scratch)
        env.pop("KILN_ROOT", None)

        figures = {k: [] for k in ("kiln_pull", "kiln_rootfs", "kiln", "skopeo", "umoci", "peer")}
        for i in range(args.runs):
            fresh = tempfile.mkdtemp(prefix=f"run{i}-", dir=scratch)
            with kilnd_on(os.path.join(os.path.dirname(kiln), "kilnd"), fresh, env) as host:
                pull = timed([kiln, "-H", host, "image", "pull", ref], env)
                rootfs = timed([kiln, "-H", host, "image", "rootfs", ref], env)
            copy = timed(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                          f"oci:{fresh}/layout:b"], env)
            unpack = timed(["umoci", "unpack", "--image", f"{fresh}/layout:b", f"{fresh}/bundle"], env)
            for key, value in (("kiln_pull", pull), ("kiln_rootfs", rootfs), ("kiln", pull + rootfs),
                               ("skopeo", copy), ("umoci", unpack), ("peer", copy + unpack)):
                figures[key].append(value)
            log(f"run {i + 1}/{args.runs}: kiln {pull:.2f}+{rootfs:.2f} = {pull + rootfs:.2f} s; "
                f"skopeo+umoci {copy:.2f}+{unpack:.2f} = {copy + unpack:.2f} s")
            shutil.rmtree(fresh)

        ratios = [k / p for k, p in zip(figures["kiln"], figures["peer"])]
        print(f"bench/image: {ref}, {nlayers} layer(s), {compressed / 2**20:.1f} MiB compressed (gzip), "
              f"{unpacked / 2**20:.1f} MiB unpacked; {args.runs} cold runs; kiln {kiln} [{build}]")
        print(f"{'seconds':32} {'median':>7} {'min':>7} {'max':>7}")
        print(f"{'kiln image pull':32} {fmt(figures['kiln_pull'])}")
        print(f"{'kiln image rootfs (unpack+EROFS)':32} {fmt(figures['kiln_rootfs'])}")
        print(f"{'kiln total':32} {fmt(figures['kiln'])}")
        print(f"{'skopeo copy':32} {fmt(figures['skopeo'])}")
        print(f"{'umoci unpack':32} {fmt(figures['umoci'])}")
        print(f"{'skopeo+umoci total':32} {fmt(figures['peer'])}")
        print(f"{'ratio kiln/peer (per run)':32} {fmt(ratios)}")
        print(f"ratio of medians: {statistics.median(figures['kiln']) / statistics.median(figures['peer']):.2f}")
        print(f"load: {run(['uptime']).strip()}")
        if args.json:
            print(json.dumps(dict(figures, ratio=ratios, compressed=compressed, unpacked=unpacked, kiln_binary=kiln,
                                  build=build)))
    finally:
        if registry:
            registry.stop()
        if userland.process is not None and userland.process.poll() is None:
            userland.process.kill()
            userland.process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

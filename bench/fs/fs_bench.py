#!/usr/bin/env python3
"""bench/fs: file system throughput inside containers (issue 14): a bind mount, a named volume and the
container's own writable layer, on kilnd (each container a VM; binds and volumes over virtio-9p, the layer
ext4 on a virtio-blk disk under overlayfs) against dockerd + runc (bind mount, volume, overlay2) in the same
run.

Not a test (not registered with CTest, asserts nothing about timings); it prints figures that
docs/benchmarks.md records. Per-run figures go to stderr, the summary table to stdout.

For each daemon (kilnd: its default, containers forked from a template; dockerd 20.10 with runc, both via
bench/common/docker_daemons.py) and each target, --runs times one `docker run --rm` whose shell, timing itself
with /proc/uptime (10 ms resolution; the workloads take far longer):
  1. sequential write: --size MiB from /dev/zero into one file, then sync;
  2. sequential read: that file to /dev/null, 8 times (what the container sees: for kilnd's 9p mounts (cache=none)
     every read goes to the host; the layer's reads come from the guest's page cache, dockerd's from the
     host's);
  3. small files: --files files of a few bytes created one by one in a new directory by the shell, then sync
     (under QEMU TCG the guest's shell itself is slow: this is what a container here pays per file).
Medians are reported, with kilnd's figure as a ratio of dockerd's for the same target.

Needs root, Debian's docker.io, busybox-static, QEMU and a kilnd build with its guest kernel linked
(scripts/link-guest-kernel.sh BUILD_DIR). Python 3 stdlib only.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../common"))
from docker_daemons import (DOCKER_CLI, IMAGE, REPO, Dockerd, Kilnd, busybox_tar, default_kilnd, log,  # noqa: E402
                            scratch_workspace, timed_run)

TARGETS = ("bind", "volume", "layer")
READ_PASSES = 8  # reads of the file, so that a page-cache read still takes longer than /proc/uptime's 10 ms
RESOLUTION = 0.01  # seconds
PATHS = {"bind": "/bind", "volume": "/vol", "layer": "/work"}
SCRIPT = r"""
t() {{ read up rest < /proc/uptime; echo "$1 $up"; }}
T={path}
mkdir -p $T/run && cd $T/run
t start
head -c {size} /dev/zero > seq && sync
t written
i=0
while [ $i -lt {passes} ]; do cat seq > /dev/null; i=$((i + 1)); done
t read
mkdir small && i=0
while [ $i -lt {files} ]; do echo $i > small/$i; i=$((i + 1)); done
sync
t created
cd / && rm -rf $T/run
"""


def run_once(daemon, target, bind_dir, volume, size_mib, files):
    script = SCRIPT.format(path=PATHS[target], size=size_mib << 20, files=files, passes=READ_PASSES)
    _, out = timed_run(daemon, ["run", "--rm", "-v", f"{bind_dir}:/bind", "-v", f"{volume}:/vol", IMAGE, "sh", "-c",
                                script])
    marks = {}
    for line in out.splitlines():
        name, _, seconds = line.partition(" ")
        marks[name] = float(seconds)
    write = marks["written"] - marks["start"]
    read = marks["read"] - marks["written"]
    create = marks["created"] - marks["read"]
    # A step shorter than the clock's resolution counts as one tick: its figure is then a lower bound.
    return {"write_mib_s": size_mib / max(write, RESOLUTION),
            "read_mib_s": size_mib * READ_PASSES / max(read, RESOLUTION),
            "files_per_s": files / max(create, RESOLUTION)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per daemon and target (default 3)")
    parser.add_argument("--size", type=int, default=64, help="MiB written and read sequentially (default 64)")
    parser.add_argument("--files", type=int, default=2000, help="small files created (default 2000)")
    parser.add_argument("--kilnd", default=default_kilnd(), help="kilnd binary (default build/release, else dev)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the daemons' logs here at the end")
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON on stdout")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("fs_bench: needs root (dockerd, kilnd's VMs)")
    daemons = {}
    work = scratch_workspace("kfs-", daemons, args.keep_logs)
    log(f"scratch directory {work}; kilnd {args.kilnd}; docker CLI {DOCKER_CLI}")
    image = busybox_tar()
    results = {}
    for name in ("kilnd", "runc"):
        daemon = Kilnd(name, work, args.kilnd) if name == "kilnd" else Dockerd(name, work)
        daemons[name] = daemon
        daemon.start()
        daemon.docker("import", "-", IMAGE, input=image)
        bind_dir = tempfile.mkdtemp(prefix=f"bind-{name}-", dir=work)
        volume = f"fs-bench-{name}"
        daemon.docker("volume", "create", volume)
        timed_run(daemon, ["run", "--rm", IMAGE, "true"])  # warm-up (kilnd: builds its template)
        results[name] = {}
        for target in TARGETS:
            runs = []
            for i in range(args.runs):
                figures = run_once(daemon, target, bind_dir, volume, args.size, args.files)
                log(f"{name} {target} run {i + 1}: write {figures['write_mib_s']:.1f} MiB/s, read "
                    f"{figures['read_mib_s']:.1f} MiB/s, {figures['files_per_s']:.0f} files/s")
                runs.append(figures)
            results[name][target] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        daemon.stop()

    print(f"# bench/fs — {datetime.date.today()} — {platform.node()}, {os.cpu_count()} CPUs; "
          f"{args.size} MiB sequential, {args.files} small files, median of {args.runs}")
    print("| target | figure | kilnd | dockerd+runc | kilnd / runc |")
    print("| --- | --- | --- | --- | --- |")
    units = {"write_mib_s": "seq write MiB/s", "read_mib_s": "seq read MiB/s", "files_per_s": "small files/s"}
    for target in TARGETS:
        for key, label in units.items():
            kiln, runc = results["kilnd"][target][key], results["runc"][target][key]
            print(f"| {target} | {label} | {kiln:.1f} | {runc:.1f} | {kiln / runc:.2f} |")
    if args.json:
        print(json.dumps(results, indent=2))
    log(f"done; repo {REPO}")


if __name__ == "__main__":
    main()

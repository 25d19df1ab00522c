#!/usr/bin/env python3
"""bench/docker-run: `docker run --rm busybox true` end to end and host PSS per idle container, kilnd (each
container a VM) against dockerd + runc and dockerd + gVisor's runsc, measured in the same run.

Not a test (not registered with CTest, asserts nothing about timings); it prints figures that
docs/benchmarks.md records. Per-run figures go to stderr, the summary table to stdout.

  1. Starts three daemons under one scratch directory, each on its own socket, data root and exec root:
       kilnd : kilnd --root R --run-dir RUN --detach --log-level debug     (Docker API on RUN/docker.sock)
       runc  : dockerd --bridge=none --iptables=false ... (its own managed containerd; default runtime runc)
       runsc : the same with daemon.json runtimes {runsc: /usr/bin/runsc --network=none}, default-runtime
               runsc. runsc's own --network=none: with the sandbox's default (netstack) it refuses to start
               here ("cannot run with network enabled in root network namespace"); dockerd --bridge=none
               gives runc containers only a loopback anyway.
     and `docker import`s the same busybox image into each (a tar of the host's static /bin/busybox plus
     applet symlinks, made here).
  2. `docker run --rm busybox true` (the docker CLI spawned, exit status checked): one untimed warm-up per
     daemon, then --runs rounds, each round one run per daemon in turn (so drift in the machine's load
     hits all three alike). Wall time from spawn to exit.
  3. Per daemon in turn (the others idle): --idle detached `docker run -d busybox sleep 3600` (each timed
     too), a settle pause, then the PSS (/proc/PID/smaps_rollup) of every process belonging to the
     containers, summed and divided by --idle:
       kilnd : the QEMU process of each container (State.Pid of `docker inspect`) and its descendants (none)
       runc  : each container's containerd-shim-runc-v2 (found by its `-id ID -address <this daemon's
               containerd socket>`) and the shim's descendants: the container's `sleep`
       runsc : the same shim and its descendants: runsc-gofer, runsc-sandbox and the sandbox's ptrace stub
     Not counted there, reported apart: the daemons themselves (kilnd; dockerd + its containerd).
     Then the containers are removed.

Every daemon, container, shim, sandbox and VM this program starts is removed at exit, also on failure or
SIGINT/SIGTERM. A daemon that cannot start or run the container is reported as a failed row, not dropped.

Needs root, Debian's docker.io (dockerd and the docker CLI 20.10 at /usr/bin/docker), runsc, busybox-static,
QEMU, and a kilnd build with its guest kernel linked (scripts/link-guest-kernel.sh BUILD_DIR).
Python 3 stdlib only.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../common"))
from docker_daemons import (DOCKER_CLI, IMAGE, MEMORY_FIELDS, Dockerd, Kilnd, busybox_tar,  # noqa: E402
                            default_kilnd, kilnd_phases, log, measure_idle, scratch_workspace, summary,
                            timed_run)

SYSTEMS = ("kilnd", "runc", "runsc")


def print_table(results, order, runs, idle):
    def cell(name, key, fmt):
        r = results[name]
        if r.get("error") and key not in r:
            return "failed"
        s = r.get(key)
        return "—" if s is None else f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"

    def ratio(name, key):
        base, other = results.get("runc", {}).get(key), results[name].get(key)
        if not base or not other:
            return "—"
        return f"{other['median'] / base['median']:.2f}×"

    seconds = lambda v: f"{v:.3f} s"  # noqa: E731
    mib = lambda v: f"{v / 1024:.1f} MiB"  # noqa: E731
    print(f"docker run end to end (median (min–max), {runs} runs after one warm-up) and host PSS per idle "
          f"container ({idle} idle `sleep 3600` containers); ratios are against runc, same run")
    print()
    print("| measurement | " + " | ".join(order) + " |")
    print("| --- |" + " ---: |" * len(order))
    print("| `docker run --rm busybox true` | " + " | ".join(cell(n, "run", seconds) for n in order) + " |")
    print("| ratio to runc (medians) | " + " | ".join(ratio(n, "run") for n in order) + " |")
    print(f"| `docker run -d busybox sleep 3600` ({idle}) | " +
          " | ".join(cell(n, "detached", seconds) for n in order) + " |")
    print("| PSS per idle container | " + " | ".join(
        (mib(results[n]["pss_per_container_kib"]) if "pss_per_container_kib" in results[n] else
         ("failed" if results[n].get("error") else "—")) for n in order) + " |")
    print("| ratio to runc | " + " | ".join(
        (f"{results[n]['pss_per_container_kib'] / results['runc']['pss_per_container_kib']:.2f}×"
         if "pss_per_container_kib" in results[n] and "pss_per_container_kib" in results.get("runc", {})
         else "—") for n in order) + " |")
    print("| of which anon / file / shmem | " + " | ".join(
        (" / ".join(f"{results[n][f'pss_{kind}_per_container_kib'] / 1024:.1f}" for kind in ("anon", "file", "shmem"))
         if "pss_per_container_kib" in results[n] else "—") for n in order) + " |")
    print("| RSS per idle container (shared pages counted in full) | " + " | ".join(
        (mib(results[n]["rss_per_container_kib"]) if "rss_per_container_kib" in results[n] else "—")
        for n in order) + " |")
    print(f"| daemon PSS with {idle} idle (not in the row above) | " + " | ".join(
        (mib(results[n]["daemon_pss_kib"]) if "daemon_pss_kib" in results[n] else "—") for n in order) + " |")
    print()
    for name in order:
        if results[name].get("pss_processes"):
            print(f"{name}: PSS counts these processes per container: {', '.join(results[name]['pss_processes'])}")
    phases = results.get("kilnd", {}).get("phases")
    if phases:
        print()
        print(f"Where the time goes in kilnd's `docker run --rm busybox true` ({runs} timed runs), from its debug "
              "log's timestamps (ms):")
        print()
        print("| phase | median | min | max |")
        print("| --- | ---: | ---: | ---: |")
        for phase, s in phases.items():
            print(f"| {phase} | {s['median'] * 1000:.0f} | {s['min'] * 1000:.0f} | {s['max'] * 1000:.0f} |")
    for name in order:
        if results[name].get("error"):
            print(f"\n{name} failed: {results[name]['error']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed `docker run --rm` per daemon (default 20)")
    parser.add_argument("--idle", type=int, default=20, help="idle containers per daemon for PSS (default 20)")
    parser.add_argument("--settle", type=float, default=10, help="seconds between the last idle start and PSS")
    parser.add_argument("--kilnd", default=default_kilnd(), help="kilnd binary (default build/release, else dev)")
    parser.add_argument("--kiln-memory", default="",
                        help="`docker run --memory` for kilnd's containers (= the VM's RAM; default kilnd's)")
    parser.add_argument("--only", action="append", choices=SYSTEMS, help="measure only these (repeatable)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy kilnd.log and dockerd logs here at the end")
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON on stdout")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("docker_run_bench: needs root (dockerd, runsc, kilnd's VMs)")

    order = [name for name in SYSTEMS if not args.only or name in args.only]
    daemons = {}
    work = scratch_workspace("kdr-", daemons, args.keep_logs)

    log(f"scratch directory {work}; docker CLI {DOCKER_CLI} "
        f"{subprocess.run([DOCKER_CLI, '--version'], capture_output=True, text=True).stdout.strip()}")
    image = busybox_tar()
    run_args = {name: [] for name in order}
    if "kilnd" in order and args.kiln_memory:
        run_args["kilnd"] = ["--memory", args.kiln_memory]
    results = {name: {} for name in order}
    for name in order:
        daemon = (Kilnd(name, work, args.kilnd) if name == "kilnd" else
                  Dockerd(name, work, runtime="runsc" if name == "runsc" else None))
        daemons[name] = daemon
        try:
            daemon.start()
            daemon.docker("import", "-", IMAGE, input=image)
            elapsed, _ = timed_run(daemon, ["run", "--rm", *run_args[name], IMAGE, "true"])
            log(f"{name}: warm-up docker run --rm {IMAGE} true: {elapsed:.3f} s")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            daemon.error = str(e)
            log(f"{name}: FAILED: {e}")

    times = {name: [] for name in order}
    for i in range(args.runs):
        for name in order:
            daemon = daemons[name]
            if daemon.error:
                continue
            try:
                elapsed, _ = timed_run(daemon, ["run", "--rm", *run_args[name], IMAGE, "true"])
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                daemon.error = str(e)
                log(f"{name}: FAILED: {e}")
                continue
            times[name].append(elapsed)
            log(f"{name}: run {i + 1}/{args.runs} docker run --rm {IMAGE} true: {elapsed:.3f} s")
    for name in order:
        if times[name]:
            results[name]["run"] = summary(times[name])
            results[name]["run_seconds"] = times[name]

    if "kilnd" in order and times["kilnd"]:
        try:
            results["kilnd"]["phases"] = kilnd_phases(daemons["kilnd"].log_path, 1, len(times["kilnd"]))
        except (OSError, ValueError) as e:
            log(f"kilnd: reading the phases from its log: {e}")

    for name in order:
        daemon = daemons[name]
        if daemon.error:
            continue
        try:
            starts, rows, daemon_pss = measure_idle(daemon, args.idle, run_args[name], args.settle)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            daemon.error = str(e)
            log(f"{name}: FAILED: {e}")
            daemon.remove_all_containers()
            continue
        results[name]["detached"] = summary(starts)
        for key in MEMORY_FIELDS:
            results[name][f"{key.lower()}_per_container_kib"] = sum(row[3][key] for row in rows) / args.idle
        results[name]["pss_processes"] = sorted({row[2] for row in rows})
        results[name]["daemon_pss_kib"] = daemon_pss

    for name in order:
        if daemons[name].error:
            results[name]["error"] = daemons[name].error
    print_table(results, order, args.runs, args.idle)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if not any(d.error for d in daemons.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""bench/fork: what VM fork (issue 12) buys kilnd's containers, against kilnd booting every container's VM
cold and against dockerd + runc and dockerd + gVisor's runsc, all measured in the same run.

Not a test (not registered with CTest, asserts nothing about timings); it prints figures that
docs/benchmarks.md records. Per-run figures go to stderr, the summary tables to stdout.

  1. Starts four daemons under one scratch directory, each with its own socket, root and run directory
     (bench/common/docker_daemons.py, as bench/docker-run does):
       pool  : kilnd --root R --run-dir RUN --detach --log-level debug   (its defaults: --boot=fork, a warm
               pool of 2 idle clones per VM shape)
       fork  : the same with --warm-pool 0 (every start forks)
       cold  : the same with --boot=cold
       runc  : dockerd --bridge=none --iptables=false ... (its own containerd; runtime runc)
       runsc : the same with runsc --network=none as the default runtime
     and `docker import`s the same busybox image into each. One untimed warm-up `docker run` per daemon;
     fork's builds its template (the build time is read from the VM's start.timings_ms "template-build");
     pool's then waits until its pool holds 2 idle clones (GET /v1/templates "pooled").
  2. `docker run --rm busybox true`: --runs rounds, each one run per daemon in turn; wall time from the
     docker CLI's spawn to its exit.
  3. Start rate of `docker run -d busybox sleep 3600`, for fork and runc: --serial containers one after the
     other, then --parallel-total containers by --parallel concurrent clients; containers per second of
     wall time. The serial fork containers' VMs give the per-step start timings (GET /v1/vms/{id}:
     start.timings_ms), printed as medians per step.
  4. Host memory: --idle idle `sleep 3600` containers on fork, then on cold (the other daemons idle), settle
     --settle s, PSS (/proc/PID/smaps_rollup) of each container's QEMU (State.Pid), per container. Then
     --idle-many forked ones if MemAvailable allows. KSM's /sys/kernel/mm/ksm/run is reported, not changed.
     The start timings of these fork and cold VMs give "fork vs cold boot to agent-ready".

Every daemon, container, shim, sandbox and VM this program starts is removed at exit, also on failure or
SIGINT/SIGTERM. Needs root, Debian's docker.io, runsc, busybox-static, QEMU, and a kilnd build with its guest
kernel linked (scripts/link-guest-kernel.sh BUILD_DIR). Python 3 stdlib only.
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../common"))
from docker_daemons import (DOCKER_CLI, IMAGE, MEMORY_FIELDS, REPO, Dockerd, Kilnd, busybox_tar,  # noqa: E402
                            default_kilnd, kilnd_phases, log, measure_idle, scratch_workspace, summary, timed_run)

SYSTEMS = ("pool", "fork", "cold", "runc", "runsc")
RATE_SYSTEMS = ("pool", "fork", "runc")
KILND_ARGS = {"pool": [], "fork": ["--warm-pool", "0"], "cold": ["--boot=cold"]}
# The steps kilnd times (GET /v1/vms/{id} start.timings_ms), in the order they happen: template-build (only
# the start that built the template), spawn (QEMU started), monitor (QMP answering), load (fork only: the
# template's device state loaded, the clone resumed), agent-setup (agent connected; a clone's identity given,
# a cold VM's mounts made).
STEP_ORDER = ("template-build", "spawn", "monitor", "load", "agent-setup")
AGENT_READY_STEPS = ("spawn", "monitor", "load", "agent-setup")
READY = "launch → agent ready (sum of the steps but template-build)"


def meminfo_kib(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def ksm_run():
    try:
        with open("/sys/kernel/mm/ksm/run") as f:
            return f.read().strip()
    except OSError:
        return "unavailable"


def qemu_version():
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def start_rate(daemon, count, parallel):
    """Starts `count` `docker run -d busybox sleep 3600` with `parallel` concurrent clients; returns
    (containers per second of wall time, per-start seconds, container ids). The containers stay."""
    def one(_):
        return timed_run(daemon, ["run", "-d", IMAGE, "sleep", "3600"])
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(one, range(count)))
    wall = time.monotonic() - started
    return count / wall, [r[0] for r in results], [r[1] for r in results]


RAM_FIELDS = ("Rss", "Pss", "Anonymous")


def guest_ram_kib(pid):
    """{field: KiB} of RAM_FIELDS over QEMU's guest-RAM mapping: a clone's private mapping of its template's
    memory file (<root>/templates/<key>/memory; Anonymous = the pages it wrote, copied on write) or a cold
    VM's memfd (Pss there is its Pss_Shmem). None if the process is gone."""
    values, in_ram = dict.fromkeys(RAM_FIELDS, 0), False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header: address range, perms, ...
                    fields = line.split(None, 5)
                    path = fields[5].strip() if len(fields) > 5 else ""
                    in_ram = "/templates/" in path or path.startswith("/memfd:")
                elif in_ram and first[:-1] in values:
                    values[first[:-1]] += int(line.split()[1])
    except OSError:
        return None
    return values


def wait_for_pool(daemon, count, timeout=120):
    """Until kilnd's warm pool holds `count` idle clones (its refill runs in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(t.get("pooled", 0) for t in daemon.kiln_api("/v1/templates")) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the warm pool did not fill to {count} in {timeout} s")


def vm_timings(daemon, ids):
    """[(mode, template, {step: ms})] of the containers' VMs."""
    found = []
    for container_id in ids:
        start = daemon.vm_of(container_id).get("start") or {}
        found.append((start.get("mode"), start.get("template"), start.get("timings_ms") or {}))
    return found


def step_medians(timings):
    """{step: summary of ms} over VMs' start.timings_ms, steps in the order they first appear, and the sum of
    AGENT_READY_STEPS per VM as "to agent ready"."""
    steps = {}
    for _, _, per_step in timings:
        for step, ms in per_step.items():
            steps.setdefault(step, []).append(ms)
    known = [step for step in STEP_ORDER if step in steps]
    result = {step: summary(steps[step]) for step in known + sorted(set(steps) - set(known))}
    ready = [sum(ms for step, ms in per_step.items() if step in AGENT_READY_STEPS) for _, _, per_step in timings
             if per_step]
    if ready:
        result[READY] = summary(ready)
    return result


def idle_memory(daemon, count, settle, results, key):
    """PSS of `count` idle containers on `daemon` into results[key]; their VMs' start timings too (kilnd)."""
    timings, ram = [], []
    def before_remove(ids):
        if isinstance(daemon, Kilnd):
            timings.extend(vm_timings(daemon, ids))
            for container_id in ids:
                for pid in daemon.container_roots(container_id):
                    if (found := guest_ram_kib(pid)) is not None:
                        ram.append(found)
    available_before = meminfo_kib("MemAvailable")
    starts, rows, daemon_pss = measure_idle(daemon, count, [], settle, before_remove)
    figures = {"count": count, "detached": summary(starts), "daemon_pss_kib": daemon_pss,
               "mem_available_before_kib": available_before}
    for field in MEMORY_FIELDS:
        figures[f"{field.lower()}_per_container_kib"] = sum(row[3][field] for row in rows) / count
    if ram:
        for field in RAM_FIELDS:
            figures[f"ram_{field.lower()}_per_container_kib"] = sum(r[field] for r in ram) / len(ram)
    if timings:
        figures["modes"] = sorted({t[0] or "?" for t in timings})
        figures["templates"] = sorted({t[1] for t in timings if t[1]})
        figures["steps"] = step_medians(timings)
    results[key] = figures
    log(f"{daemon.name}: {count} idle: PSS {figures['pss_per_container_kib'] / 1024:.1f} MiB per container")


def template_sizes(daemon):
    """{key: memory file bytes} of a kilnd's templates (their manifests)."""
    sizes = {}
    directory = os.path.join(daemon.root, "templates")
    for key in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        try:
            with open(os.path.join(directory, key, "snapshot.json")) as f:
                manifest = json.load(f)
            sizes[key] = manifest["files"]["memory"]["bytes"]
        except (OSError, ValueError, KeyError):
            continue
    return sizes


# --- output ------------------------------------------------------------------------------------------------
def seconds(v):
    return f"{v:.3f} s"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def spread(s, fmt):
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def print_report(results, args, build, order):
    print(f"bench/fork — {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; kilnd {build}; {qemu_version()}; "
          f"nproc {os.cpu_count()}; KSM run={results['ksm_run']}; kernel {platform.release()}")
    print(f"command: {' '.join(sys.argv)}")
    print()
    print(f"`docker run --rm busybox true`, median (min–max) of {args.runs} interleaved rounds after one warm-up; "
          "ratios of medians")
    print()
    print("| daemon | median (min–max) | ratio to runc | ratio to fork |")
    print("| --- | ---: | ---: | ---: |")
    runs = results["run"]
    for name in order:
        if name not in runs:
            print(f"| {name} | failed | — | — |")
            continue
        to_runc = f"{runs[name]['median'] / runs['runc']['median']:.2f}×" if "runc" in runs else "—"
        to_fork = f"{runs[name]['median'] / runs['fork']['median']:.2f}×" if "fork" in runs else "—"
        print(f"| {name} | {spread(runs[name], seconds)} | {to_runc} | {to_fork} |")
    print()
    if results.get("rate"):
        print(f"Start rate, `docker run -d busybox sleep 3600` (containers per second of wall time; per-start "
              f"median (min–max))")
        print()
        print(f"| daemon | serial ({args.serial}) | per start | {args.parallel} in parallel ({args.parallel_total}) "
              "| per start |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, rate in results["rate"].items():
            print(f"| {name} | {rate['serial_per_s']:.2f}/s | {spread(rate['serial'], seconds)} | "
                  f"{rate['parallel_per_s']:.2f}/s | {spread(rate['parallel'], seconds)} |")
        print()
    memory = results.get("memory", {})
    if memory:
        print(f"Host memory of idle `sleep 3600` containers: PSS of each container's QEMU (smaps_rollup), per "
              f"container, {args.settle:g} s after the last start; KSM run={results['ksm_run']}")
        print()
        print("| containers | PSS per container | anon / file / shmem (MiB) | of it guest RAM: PSS (written: "
              "anon) | QEMU itself (PSS − guest RAM) | RSS per container | kilnd's own PSS | "
              "`docker run -d` median (min–max) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, m in memory.items():
            parts = " / ".join(f"{m[f'pss_{kind}_per_container_kib'] / 1024:.1f}"
                               for kind in ("anon", "file", "shmem"))
            ram = own = "—"
            if "ram_pss_per_container_kib" in m:
                ram = f"{mib(m['ram_pss_per_container_kib'])} ({mib(m['ram_anonymous_per_container_kib'])})"
                own = mib(m["pss_per_container_kib"] - m["ram_pss_per_container_kib"])
            print(f"| {key} | **{mib(m['pss_per_container_kib'])}** | {parts} | {ram} | {own} | "
                  f"{mib(m['rss_per_container_kib'])} | {mib(m['daemon_pss_kib'])} | "
                  f"{spread(m['detached'], seconds)} |")
        print()
        for key, m in memory.items():
            if "modes" in m:
                print(f"{key}: VM start modes {m['modes']}, templates {m['templates'] or '—'}")
        if results.get("template_bytes"):
            for key, size in results["template_bytes"].items():
                print(f"template {key}: memory file {size / 2**20:.0f} MiB (page cache, shared by its clones)")
        print()
    steps = results.get("steps", {})
    if steps:
        print("Start steps of the VMs (GET /v1/vms/{id} start.timings_ms), median (min–max) in ms")
        print()
        names = list(steps)
        seen = set(step for name in names for step in steps[name])
        all_steps = [step for step in (*STEP_ORDER, READY) if step in seen] + sorted(
            seen - set(STEP_ORDER) - {READY})
        print("| step | " + " | ".join(f"{name} (n={max(s['n'] for s in steps[name].values())})" for name in names)
              + " |")
        print("| --- |" + " ---: |" * len(names))
        for step in all_steps:
            cells = [spread(steps[name][step], lambda v: f"{v:.1f}") if step in steps[name] else "—"
                     for name in names]
            print(f"| {step} | " + " | ".join(cells) + " |")
        print()
    phases = results.get("phases", {})
    if phases:
        print(f"Where the time goes in kilnd's `docker run --rm busybox true` (the {args.runs} timed runs), from "
              "its debug log's timestamps (ms), median (min–max)")
        print()
        names = list(phases)
        print("| phase | " + " | ".join(names) + " |")
        print("| --- |" + " ---: |" * len(names))
        for phase in dict.fromkeys(p for name in names for p in phases[name]):
            cells = [spread(phases[name][phase], lambda v: f"{v * 1000:.0f}") if phase in phases[name] else "—"
                     for name in names]
            print(f"| {phase} | " + " | ".join(cells) + " |")
        print()
    if results.get("template_build_ms") is not None:
        print(f"template build (the warm-up's first fork; once per kilnd root): {results['template_build_ms']:.0f} ms")
    for name, error in results.get("errors", {}).items():
        print(f"\n{name} failed: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds of `docker run --rm` (default 10)")
    parser.add_argument("--serial", type=int, default=10, help="serial `docker run -d` for the start rate")
    parser.add_argument("--parallel", type=int, default=4, help="concurrent clients for the start rate")
    parser.add_argument("--parallel-total", type=int, default=12, help="containers started by them")
    parser.add_argument("--idle", type=int, default=20, help="idle containers for PSS, fork and cold (default 20)")
    parser.add_argument("--idle-many", type=int, default=50,
                        help="then this many forked ones, if MemAvailable allows (0: skip; default 50)")
    parser.add_argument("--settle", type=float, default=10, help="seconds between the last idle start and PSS")
    parser.add_argument("--kilnd", default=default_kilnd(), help="kilnd binary (default build/release, else dev)")
    parser.add_argument("--only", action="append", choices=SYSTEMS, help="measure only these (repeatable)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the daemons' logs here at the end")
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON on stdout")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("fork_bench: needs root (dockerd, runsc, kilnd's VMs)")
    build = os.path.relpath(os.path.dirname(os.path.dirname(os.path.abspath(args.kilnd))), REPO)
    if not build.startswith("build/"):
        build = args.kilnd
    order = [name for name in SYSTEMS if not args.only or name in args.only]
    began = time.monotonic()
    daemons = {}
    work = scratch_workspace("kfb-", daemons, args.keep_logs)

    log(f"scratch directory {work}; kilnd {args.kilnd} ({build}); docker CLI {DOCKER_CLI}")
    results = {"ksm_run": ksm_run(), "run": {}, "rate": {}, "memory": {}, "steps": {}, "errors": {}}
    image = busybox_tar()
    for name in order:
        if name in KILND_ARGS:
            daemon = Kilnd(name, work, args.kilnd, KILND_ARGS[name])
        else:
            daemon = Dockerd(name, work, runtime="runsc" if name == "runsc" else None)
        daemons[name] = daemon
        try:
            daemon.start()
            daemon.docker("import", "-", IMAGE, input=image)
            # The warm-up keeps its container until its VM's start record is read (fork: the template build).
            elapsed, container_id = timed_run(daemon, ["run", "-d", IMAGE, "true"])
            daemon.docker("wait", container_id)
            if isinstance(daemon, Kilnd):
                mode, key, steps = vm_timings(daemon, [container_id])[0]
                log(f"{name}: warm-up VM start mode {mode}, template {key}, steps {steps}")
                if name == "fork":
                    results["template_build_ms"] = steps.get("template-build")
            daemon.docker("rm", container_id)
            log(f"{name}: warm-up docker run -d {IMAGE} true: {elapsed:.3f} s")
            if name == "pool":
                wait_for_pool(daemon, 2)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            daemon.error = str(e)
            log(f"{name}: FAILED: {e}")

    def alive(name):
        return name in daemons and not daemons[name].error

    def fail(name, e):
        daemons[name].error = str(e)
        log(f"{name}: FAILED: {e}")
        try:
            daemons[name].remove_all_containers()
        except (OSError, subprocess.SubprocessError):
            pass

    times = {name: [] for name in order}
    for i in range(args.runs):
        for name in order:
            if not alive(name):
                continue
            try:
                elapsed, _ = timed_run(daemons[name], ["run", "--rm", IMAGE, "true"])
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                fail(name, e)
                continue
            times[name].append(elapsed)
            log(f"{name}: run {i + 1}/{args.runs} docker run --rm {IMAGE} true: {elapsed:.3f} s")
    for name in order:
        if times[name]:
            results["run"][name] = summary(times[name])
            results["run"][name]["seconds"] = times[name]
        if name in KILND_ARGS and times[name]:
            try:  # the warm-up was the first container; the timed runs follow it
                results.setdefault("phases", {})[name] = kilnd_phases(daemons[name].log_path, 1, len(times[name]))
            except (OSError, ValueError) as e:
                log(f"{name}: reading the phases from its log: {e}")

    for name in RATE_SYSTEMS:
        if not alive(name):
            continue
        daemon = daemons[name]
        try:
            serial_rate, serial, ids = start_rate(daemon, args.serial, 1)
            log(f"{name}: serial start rate {serial_rate:.2f}/s")
            if name in ("pool", "fork"):
                results["steps"][f"{name} ({len(ids)} serial starts)"] = step_medians(vm_timings(daemon, ids))
            daemon.remove_all_containers()
            parallel_rate, parallel, ids = start_rate(daemon, args.parallel_total, args.parallel)
            log(f"{name}: {args.parallel} in parallel: start rate {parallel_rate:.2f}/s")
            if name in ("pool", "fork"):
                results["steps"][f"{name} ({len(ids)}, {args.parallel} in parallel)"] = \
                    step_medians(vm_timings(daemon, ids))
            daemon.remove_all_containers()
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            fail(name, e)
            continue
        results["rate"][name] = {"serial_per_s": serial_rate, "serial": summary(serial),
                                 "parallel_per_s": parallel_rate, "parallel": summary(parallel)}

    for name, count, key in (("fork", args.idle, f"{args.idle} forked"), ("cold", args.idle, f"{args.idle} cold")):
        if not alive(name):
            continue
        try:
            idle_memory(daemons[name], count, args.settle, results["memory"], key)
            if "steps" in results["memory"][key]:
                results["steps"][f"{key} (idle)"] = results["memory"][key].pop("steps")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            fail(name, e)
    if alive("fork") and args.idle_many > 0:
        key = f"{args.idle_many} forked"
        # What the --idle forked ones took each, with room to spare, plus 2 GiB for everything else.
        per = results["memory"].get(f"{args.idle} forked", {}).get("pss_per_container_kib", 0)
        need = args.idle_many * per * 1.5 + 2 * 2**20
        available = meminfo_kib("MemAvailable")
        if per and available > need:
            try:
                idle_memory(daemons["fork"], args.idle_many, args.settle, results["memory"], key)
                results["memory"][key].pop("steps", None)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                fail("fork", e)
        else:
            log(f"fork: skipping {args.idle_many} idle: MemAvailable {available} KiB, need ~{need:.0f} KiB")
            results["errors"][key] = f"skipped: MemAvailable {available // 1024} MiB, need ~{need / 1024:.0f} MiB"
    if "fork" in daemons:
        results["template_bytes"] = template_sizes(daemons["fork"])

    for name in order:
        if daemons[name].error:
            results["errors"][name] = daemons[name].error
    results["wall_s"] = time.monotonic() - began
    print_report(results, args, build, order)
    print(f"\nbench wall time: {results['wall_s']:.0f} s")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if not any(d.error for d in daemons.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

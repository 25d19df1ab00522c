#!/usr/bin/env python3
"""Runs clang-tidy with the repository's .clang-tidy on every translation unit of a build directory's
compile_commands.json, in parallel, and fails on any finding.

Usage: scripts/check-tidy.py [BUILD_DIR] [FILTER_REGEX] [--jobs N] [--cache DIR] [--no-cache] [--analyzer-on-tests]
  BUILD_DIR  a configured build directory (default build/dev)
  --cache    results of clean TUs (default ${KILN_CACHE_DIR:-/var/cache/kiln}/clang-tidy)
  FILTER     only TUs whose path matches this regex

Budget (CI has 2 cores and 40 minutes for everything): every check runs on every TU, except that the
clang static analyzer (clang-analyzer-*) skips unit-test TUs (*_test.cc, tests/) unless --analyzer-on-tests.
Measured on layer_apply_test.cc: 38.8 s with the analyzer, 3.7 s without (it walks every path of every
gtest macro expansion); on layer_apply.cc 9.2 s against 2.9 s. All 148 TUs with the analyzer cost 33 CPU-min
(about 16 min on 2 cores, too much next to a 12-min build and the tests); without it on tests, about half.

The compile commands are g++'s. clang-tidy runs the clang 14 front end on them with two changes, decided on
purpose: -Werror is dropped (clang warns about things g++ does not; the g++ build is the warning gate, this
check is for clang-tidy's findings) and -Wno-unknown-warning-option is added. Sanitizer flags stay: clang
understands them. Each source file is checked once even when two targets compile it (host and guest
variants differ only in sanitizer flags). A TU clang cannot parse is a failure, not a skip: clang-tidy reports
it as clang-diagnostic-error, and nothing is excluded unless UNPARSEABLE below names it with the reason.

Cache: a clean result is remembered under a key made of clang-tidy's version, .clang-tidy, the arguments
and the TU's preprocessed text with macro definitions (clang -E -dD), so any change to the file, to any
header it includes, to a macro, to the flags or to the check list re-checks it. Findings are never cached.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# Source files clang 14 cannot parse, each with the reason. Empty today: every TU parses.
UNPARSEABLE = {
    # "src/x/y.cc": "why",
}

DROPPED_FLAGS = {"-Werror"}
ADDED_FLAGS = ["-Wno-unknown-warning-option"]


def tool(name):
    for candidate in (name + "-14", name):
        for directory in os.environ.get("PATH", "").split(os.pathsep):
            path = os.path.join(directory, candidate)
            if os.access(path, os.X_OK):
                return path
    sys.exit(f"check-tidy: {name} not found (apt-get install clang clang-tidy)")


def translation_units(build_dir):
    with open(os.path.join(build_dir, "compile_commands.json")) as f:
        entries = json.load(f)
    units = {}
    for entry in entries:
        path = os.path.normpath(os.path.join(entry["directory"], entry["file"]))
        if path in units:
            continue
        argv = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
        args, skip = [], False
        for arg in argv[1:]:  # argv[0] is the compiler
            if skip:
                skip = False
                continue
            if arg in ("-o", "-c"):
                skip = arg == "-o"
                continue
            if arg in DROPPED_FLAGS or os.path.normpath(os.path.join(entry["directory"], arg)) == path:
                continue
            args.append(arg)
        units[path] = (entry["directory"], args + ADDED_FLAGS)
    return units


def cache_key(clang, path, directory, args, fingerprint):
    pre = subprocess.run([clang, "-x", "c++", "-E", "-dD", *args, path], cwd=directory, capture_output=True)
    if pre.returncode != 0:
        return None  # let clang-tidy report it
    # The checkout's own path is left out, so a clean result counts in any clone (CI checks out afresh in
    # another folder): only what the file, its headers, macros and flags say matters.
    root = ROOT.encode()
    digest = hashlib.sha256(fingerprint)
    digest.update(json.dumps([path, args]).encode().replace(root, b"<root>"))
    digest.update(pre.stdout.replace(root, b"<root>"))
    return digest.hexdigest()


def is_test(path):
    rel = os.path.relpath(path, ROOT)
    return rel.endswith("_test.cc") or rel.startswith("tests" + os.sep)


def check(unit, clang, tidy, fingerprint, cache_dir, analyzer_on_tests):
    path, (directory, args) = unit
    checks = [] if analyzer_on_tests or not is_test(path) else ["--checks=-clang-analyzer-*"]
    key = None
    if cache_dir:
        key = cache_key(clang, path, directory, args, fingerprint + json.dumps(checks).encode())
        if key and os.path.exists(os.path.join(cache_dir, key)):
            return path, "cached", ""
    result = subprocess.run([tidy, "--quiet", "--warnings-as-errors=*", *checks, path, "--", *args], cwd=directory,
                            capture_output=True, text=True)
    output = result.stdout + "\n".join(line for line in result.stderr.splitlines()
                                       if not re.match(r"^\d+ warnings? (and \d+ errors? )?generated\.$", line)
                                       and not line.startswith(("Suppressed ", "Use -header-filter",
                                                                 "Use -system-headers")))
    if result.returncode == 0 and not re.search(r"^\S+:\d+:\d+: (warning|error):", result.stdout, re.M):
        if key:
            os.makedirs(cache_dir, exist_ok=True)
            open(os.path.join(cache_dir, key), "w").close()
        return path, "clean", ""
    return path, "findings", output.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir", nargs="?", default=os.path.join(ROOT, "build", "dev"))
    ap.add_argument("filter", nargs="?", default="")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cache", default=os.path.join(os.environ.get("KILN_CACHE_DIR", "/var/cache/kiln"), "clang-tidy"))
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--analyzer-on-tests", action="store_true", help="run clang-analyzer-* on test TUs too")
    opts = ap.parse_args()

    tidy, clang = tool("clang-tidy"), tool("clang++")
    version = subprocess.run([tidy, "--version"], capture_output=True, check=True).stdout
    with open(os.path.join(ROOT, ".clang-tidy"), "rb") as f:
        fingerprint = version + f.read()
    cache_dir = None
    if not opts.no_cache:
        try:
            os.makedirs(opts.cache, exist_ok=True)
            if os.access(opts.cache, os.W_OK):
                cache_dir = opts.cache
        except OSError:
            pass
        if not cache_dir:
            print(f"check-tidy: cache {opts.cache} not writable; checking every TU")

    units = translation_units(opts.build_dir)
    unparseable = {os.path.join(ROOT, p): why for p, why in UNPARSEABLE.items()}
    for path, why in sorted(unparseable.items()):
        if path in units:
            print(f"check-tidy: not checked (clang 14 cannot parse it): {os.path.relpath(path, ROOT)}: {why}")
            del units[path]
    selected = sorted((p, u) for p, u in units.items() if re.search(opts.filter, p))
    start = time.monotonic()
    counts = {"cached": 0, "clean": 0, "findings": 0}
    findings = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        def run(unit):
            return check(unit, clang, tidy, fingerprint, cache_dir, opts.analyzer_on_tests)

        for path, status, output in pool.map(run, selected):
            counts[status] += 1
            if status == "findings":
                findings[path] = output
    # A finding in a header shows up once per TU that includes it: print each distinct one once.
    seen = set()
    for path, output in findings.items():
        block = []
        for chunk in re.split(r"\n(?=\S+:\d+:\d+: (?:warning|error):)", output):
            head = chunk.split("\n", 1)[0]
            if head not in seen:
                seen.add(head)
                block.append(chunk)
        if block:
            print(f"==== {os.path.relpath(path, ROOT)}")
            print("\n".join(block))
    elapsed = time.monotonic() - start
    print(f"check-tidy: {len(selected)} TUs ({counts['cached']} clean in cache, {counts['clean']} checked clean, "
          f"{counts['findings']} with findings), {len(seen)} distinct findings, {elapsed:.0f} s with {opts.jobs} jobs")
    if findings:
        print("check-tidy: FAILED: fix the findings above (or, for a check that is wrong for this code base, "
              "disable it in .clang-tidy and say why there)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

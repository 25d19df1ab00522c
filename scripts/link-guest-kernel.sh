#!/usr/bin/env bash
# Builds Kiln's guest kernel if the cache lacks it (scripts/build-guest-kernel.sh: minutes the first time on a
# machine, instant afterwards) and links it to <build dir>/guest/kernel, where the CLI looks for it.
# Usage: scripts/link-guest-kernel.sh BUILD_DIR
set -euo pipefail
build_dir=${1:?usage: link-guest-kernel.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
kernel=$("$root/scripts/build-guest-kernel.sh" --print-path)
mkdir -p "$build_dir/guest"
ln -sfn "$kernel" "$build_dir/guest/kernel"

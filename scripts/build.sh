#!/usr/bin/env bash
# Configures (once) and builds a CMake preset: scripts/build.sh [dev|release]. Incremental: Ninja rebuilds
# only what changed, so a second run with nothing changed does no work.
set -euo pipefail
preset=${1:-dev}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -f "build/$preset/build.ninja" ]; then
  # ccache (when installed) makes rebuilds in a second checkout or after a clean cheap.
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  cmake --preset "$preset" "${launcher[@]}" >/dev/null
fi
# Two cores and heavy sanitizer builds: keep parallelism at the core count.
cmake --build --preset "$preset" -- -j"$(nproc)"

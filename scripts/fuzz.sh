#!/usr/bin/env bash
# Builds the agent-frame libFuzzer target with clang in its own build directory and runs it for a fixed
# budget on the committed seed corpus (src/agent/protocol/fuzz/corpus). Exits non-zero when the fuzzer finds
# a crash, a hang, a leak or undefined behaviour; the input that did it is kept in BUILD_DIR/artifacts/.
#
# Usage: scripts/fuzz.sh [BUILD_DIR] [SECONDS]   (defaults: build/fuzz, 60)
# Reproduce a finding: BUILD_DIR/bin/kiln_agent_frame_decoder_fuzz BUILD_DIR/artifacts/crash-...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/fuzz}
seconds=${2:-60}
corpus_seed=$root/src/agent/protocol/fuzz/corpus

if [ ! -f "$build/build.ninja" ]; then
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  # ASan+UBSan (KILN_SANITIZE) on every target, fuzzer coverage instrumentation on all code, not only on the
  # harness: otherwise libFuzzer cannot see which branches of the decoders an input reached.
  cmake -S "$root" -B "$build" -G Ninja "${launcher[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="-O1 -fsanitize=fuzzer-no-link" -DKILN_SANITIZE=ON -DKILN_WERROR=OFF >/dev/null
fi
cmake --build "$build" --target kiln_agent_frame_decoder_fuzz -- -j"$(nproc)"

# New inputs the fuzzer finds go to a scratch corpus; the committed seeds are only read.
work=$build/corpus
artifacts=$build/artifacts
rm -rf "$artifacts"
mkdir -p "$work" "$artifacts"
echo "fuzz: kiln_agent_frame_decoder_fuzz for ${seconds}s on $(find "$corpus_seed" -type f | wc -l) seeds"
status=0
"$build/bin/kiln_agent_frame_decoder_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -seed=1 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$corpus_seed" 2>"$build/fuzz.log" || status=$?
# libFuzzer's log is long (one line per new input); keep the end and anything that went wrong.
grep -E "ERROR|WARNING|SUMMARY|Test unit written|^stat::|INFO: seed corpus|Done [0-9]+ runs" "$build/fuzz.log" || true
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (exit $status); full log: $build/fuzz.log; inputs: $(ls "$artifacts")" >&2
  tail -n 60 "$build/fuzz.log" >&2
  exit 1
fi
echo "fuzz: no crash in ${seconds}s"

#!/usr/bin/env bash
# Installs what Kiln needs, builds the release preset and runs the main job.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
./scripts/build.sh release
./scripts/link-guest-kernel.sh build/release
bin=build/release/bin
"$bin/kiln" --version
"$bin/kilnd" --version
"$bin/kiln" --help

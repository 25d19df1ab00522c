#!/usr/bin/env bash
# Installs what Kiln needs (Debian packages only), builds the `dev` preset (ASan+UBSan) and runs every test.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
./scripts/build.sh dev
./scripts/link-guest-kernel.sh build/dev
ctest --preset dev -j"$(nproc)"

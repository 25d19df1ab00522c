#!/usr/bin/env bash
# Installs what Kiln needs (Debian packages only), builds the `dev` preset (ASan+UBSan) and runs every test,
# including the checks on the tree itself (tests/checks: clang-format, clang-tidy, the agent-frame fuzzer)
# and the guest-kernel boot test. ctest's summary is the last thing printed; any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
./scripts/build.sh dev
./scripts/link-guest-kernel.sh build/dev
ctest --preset dev -j"$(nproc)"

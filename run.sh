#!/usr/bin/env bash
# Installs what Kiln needs, builds the release preset and the guest kernel, and runs the main job: a
# command inside a freshly booted VM, with its output and exit status coming back as if it ran here.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
./scripts/build.sh release
./scripts/link-guest-kernel.sh build/release
bin=build/release/bin
"$bin/kiln" --version
"$bin/kilnd" --version
echo "== kiln vm run -- uname -a (a VM boots, runs the command and is torn down)"
"$bin/kiln" vm run -- uname -a
echo "== stdin and exit status travel too"
status=0
echo "hello from the host" | "$bin/kiln" vm run -i -- sh -c 'read line; echo "guest read: $line"; exit 3' || status=$?
echo "exit status: $status"
[ "$status" -eq 3 ]

#!/usr/bin/env bash
# Installs everything Kiln needs to build, test and run, from Debian 12's packages only.
# Idempotent and non-interactive: asks apt only for what is missing, runs `apt-get update` at most once.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git clang-format clang-tidy ccache
  # checks run by ctest (tests/checks): clang + libFuzzer for the fuzz target, llvm-symbolizer for its traces
  clang libclang-rt-14-dev llvm-14
  # libraries (see docs/dependencies.md for why each one)
  libboost-dev libboost-system-dev nlohmann-json3-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libarchive-dev libzstd-dev zlib1g-dev libcli11-dev libfmt-dev libseccomp-dev
  libgtest-dev libgmock-dev
  # guest side and VM tools
  qemu-system-x86 qemu-utils erofs-utils e2fsprogs busybox-static cpio socat
  # guest kernel source and its build dependencies
  linux-source-6.1 bc flex bison libelf-dev libssl-dev xz-utils dwarves python3
  # guest networking: Kiln's namespace (iproute2 for tests), its rules, its outbound user-mode NAT
  iproute2 iptables slirp4netns curl
  # image fixtures and the registry used by tests
  docker-registry skopeo umoci apache2-utils debootstrap
  # OpenAPI document checks (scripts/validate-openapi.py): the OAS 3.0 JSON schema, YAML and JSON Schema
  openapi-specification python3-yaml python3-jsonschema
  # Docker clients the Docker Engine API is tested with (the docker CLI 20.10, the Python SDK, docker-compose 1.29)
  docker.io python3-docker docker-compose
  # peer runtime for bench/docker-run: gVisor's runsc under dockerd
  runsc
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}) and not root; install them or run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# docker-registry's package starts a system registry on :5000; tests start their own on random ports.
if systemctl is-enabled docker-registry >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
# docker.io's package may start a system dockerd; Kiln's tests and benches start their own (--bridge=none
# --iptables=false), and a system one would configure the host's network namespace.
for unit in docker.service docker.socket containerd.service; do
  if systemctl is-enabled "$unit" >/dev/null 2>&1; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done
echo "install-deps: done"

#!/usr/bin/env bash
# Installs what Kiln needs, builds the release preset and the guest kernel, and runs the main job: a
# command inside a freshly booted VM, with its output and exit status coming back as if it ran here; then
# kilnd, the daemon: a persistent VM created, started and exec'd into through the Kiln VM API, and a VM
# whose root filesystem comes from an image in kilnd's image store; then the docker CLI against kilnd's
# Docker Engine API: images, and containers that each run in their own VM.
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

echo "== kilnd: a persistent VM through the Kiln VM API"
work=$(mktemp -d /tmp/kiln-run.XXXXXX)
host="unix://$work/run/kiln.sock"
"$bin/kilnd" --root "$work/root" --run-dir "$work/run" --detach
cleanup() {
  [ -n "${DOCKER_HOST:-}" ] && docker rm -f counter >/dev/null 2>&1 || true
  "$bin/kiln" -H "$host" vm rm -f demo >/dev/null 2>&1 || true
  "$bin/kiln" -H "$host" vm rm -f fromimage >/dev/null 2>&1 || true
  [ -f "$work/run/kilnd.pid" ] && kill "$(cat "$work/run/kilnd.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin/kiln" -H "$host" vm create demo --memory 256M --disk 512M
"$bin/kiln" -H "$host" vm start demo
"$bin/kiln" -H "$host" vm exec demo sh -c 'echo "hello from $(uname -n), root on $(df -h / | tail -1 | cut -c1-30)"; echo kept > /root/note'
"$bin/kiln" -H "$host" vm stop demo
"$bin/kiln" -H "$host" vm start demo
echo "after stop/start the guest still has: $("$bin/kiln" -H "$host" vm exec demo cat /root/note)"
"$bin/kiln" -H "$host" vm ls

echo "== kiln image: an image in kilnd's store, and a VM made from it"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sh"
echo "this root filesystem came from the image demo/busybox:1" > "$work/rootfs/etc/motd"
tar -C "$work/rootfs" -czf "$work/rootfs.tgz" .
"$bin/kiln" -H "$host" image import "$work/rootfs.tgz" demo/busybox:1
"$bin/kiln" -H "$host" image ls
"$bin/kiln" -H "$host" vm create fromimage --image demo/busybox:1 --memory 256M --disk 256M
"$bin/kiln" -H "$host" vm start fromimage
"$bin/kiln" -H "$host" vm exec fromimage /bin/busybox cat /etc/motd
"$bin/kiln" -H "$host" vm rm -f fromimage

echo "== the docker CLI against the same kilnd (the Docker Engine API on docker.sock)"
export DOCKER_HOST="unix://$work/run/docker.sock" DOCKER_CONFIG="$work/docker-config"
docker version --format 'client API {{.Client.APIVersion}}, server {{.Server.Version}} (API {{.Server.APIVersion}}), containers run kernel {{.Server.KernelVersion}}'
docker info --format 'default runtime: {{.DefaultRuntime}}, images: {{.Images}}'
docker save -o "$work/demo.tar" demo/busybox:1
docker tag demo/busybox:1 demo/busybox:copy
docker images
docker rmi demo/busybox:copy
docker rmi demo/busybox:1
docker load -i "$work/demo.tar"
"$bin/kiln" -H "$host" image ls

echo "== docker run: every container is a VM with its own kernel (host kernel: $(uname -r))"
docker run --rm demo/busybox:1 sh -c 'echo "hello from container $(busybox hostname), kernel $(busybox uname -r)"'
docker run -d --name counter demo/busybox:1 \
  sh -c 'i=0; while [ $i -lt 600 ]; do echo "tick $i"; i=$((i+1)); busybox sleep 1; done'
sleep 3
docker logs counter
docker ps
echo "== the same container is a VM in Kiln's VM API"
"$bin/kiln" -H "$host" vm ls
docker stop -t 1 counter
docker rm counter

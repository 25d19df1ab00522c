#!/usr/bin/env python3
"""Boot test for Kiln's guest kernel under QEMU microvm (TCG unless --kvm).

Builds (or finds in the cache) the kernel via scripts/build-guest-kernel.sh, makes a busybox
initramfs, disk images and a 9p share in a temp dir, then:
  1. one "full" boot with virtio console/serial/rng/blk/net/9p/balloon devices; the guest's /init
     checks each feature and prints `KILN-CHECK <name> ok|FAIL ...` lines;
  2. --runs N timing boots of a minimal /init (launch -> /init, launch -> QEMU exit).
Exits non-zero if any check fails or QEMU does not exit by itself.

Needs: qemu-system-x86_64, busybox-static (/bin/busybox), cpio, gzip, erofs-utils, e2fsprogs.
Usage: src/guest/kernel/boot-test.py [--pvh] [--runs N] [--smp N] [--kernel FILE] [--kvm] [-v]
"""
import argparse
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# CONFIG_DEVTMPFS_MOUNT only acts when the kernel mounts a real root; an initramfs /init mounts it
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "KILN-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
chk() { if [ "$2" = 0 ]; then echo "KILN-CHECK $1 ok $3"; else echo "KILN-CHECK $1 FAIL $3"; fi; }
if [ "$KILN_TEST" = full ]; then
  echo "KILN-INFO uname-r $(uname -r)"
  echo "KILN-INFO cmdline $(cat /proc/cmdline)"
  echo "KILN-INFO cpus-online $(cat /sys/devices/system/cpu/online)"
  echo "KILN-INFO clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
  for d in /sys/bus/virtio/devices/*; do
    echo "KILN-INFO virtio $(basename $d) device=$(cat $d/device) driver=$(basename $(readlink $d/driver))"
  done
  for p in /sys/class/virtio-ports/*; do echo "KILN-INFO port $p name=$(cat $p/name) dev=/dev/$(basename $p)"; done
  [ "$(uname -r | grep -c -- -kiln)" = 1 ]; chk uname-kiln $? "$(uname -r)"
  [ "$(cat /sys/devices/system/cpu/online)" = "0-$((KILN_SMP-1))" ] || [ "$KILN_SMP" = 1 ]; chk smp $? "$(cat /sys/devices/system/cpu/online)"
  # agent channel 1: virtconsole (port 0 of the first virtio-serial device): a tty at /dev/hvc0;
  # its /dev/vportNp0 node exists but cannot be opened (ENXIO)
  grep -qx kiln.console /sys/class/virtio-ports/vport*p0/name; chk virtconsole-name $?
  echo "guest-to-host via hvc0" > /dev/hvc0; chk virtconsole-hvc0-write $?
  # agent channel 2: virtserialport (port 1 of a virtio-serial device): raw char device
  n=$(grep -lx kiln.agent /sys/class/virtio-ports/*/name); dev=/dev/$(basename $(dirname $n))
  echo "guest-to-host via $dev" > $dev; chk virtserialport-write $? "$dev"
  [ "$(cat /sys/class/misc/hw_random/rng_current)" = virtio_rng.0 ]; chk virtio-rng $?
  head -c 16 /dev/hwrng | wc -c | grep -qx 16; chk hwrng-read $?
  # disks: nothing may have been read before we mount (no partition scan)
  r1=$(awk '{print $1}' /sys/block/vda/stat); r2=$(awk '{print $1}' /sys/block/vdb/stat)
  [ "$r1" = 0 ] && [ "$r2" = 0 ]; chk no-disk-reads-at-boot $? "vda_reads=$r1 vdb_reads=$r2"
  [ ! -e /sys/block/vda/vda1 ]; chk no-partitions $?
  grep -q '\[none\]' /sys/block/vda/queue/scheduler; chk io-scheduler-none $? "$(cat /sys/block/vda/queue/scheduler)"
  mkdir -p /mnt/ro /mnt/rw /mnt/merged /mnt/9p
  mount -t erofs -o ro /dev/vda /mnt/ro; chk mount-erofs $?
  mount -t ext4 /dev/vdb /mnt/rw; chk mount-ext4 $?
  mkdir -p /mnt/rw/upper /mnt/rw/work
  mount -t overlay overlay -o lowerdir=/mnt/ro,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/merged; chk mount-overlay $?
  [ "$(cat /mnt/merged/hello.txt)" = "hello from erofs" ]; chk overlay-read-lower $?
  echo new > /mnt/merged/new.txt && rm /mnt/merged/delete-me.txt && [ ! -e /mnt/merged/delete-me.txt ] \
    && [ -e /mnt/ro/delete-me.txt ] && [ -c /mnt/rw/upper/delete-me.txt ]; chk overlay-write-whiteout $?
  umount /mnt/merged && umount /mnt/rw && umount /mnt/ro; chk umount $?
  mount -t 9p -o trans=virtio,version=9p2000.L share /mnt/9p; chk mount-9p $?
  [ "$(cat /mnt/9p/from-host.txt)" = "hello over 9p" ]; chk 9p-read $?
  echo from-guest > /mnt/9p/from-guest.txt; chk 9p-write $?
  umount /mnt/9p
  [ -e /sys/class/net/eth0 ]; chk virtio-net-eth0 $?
  ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ping -c1 -W2 10.0.2.2 >/dev/null; chk net-ping-gateway $?
  ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -q '^virtio'; chk virtio-balloon $?
  mkdir -p /dev/pts && mount -t devpts devpts /dev/pts; chk devpts $?
  mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && grep -qw memory /sys/fs/cgroup/cgroup.controllers; chk cgroup2-memory $? "$(cat /sys/fs/cgroup/cgroup.controllers)"
  mount -t tmpfs tmpfs /tmp; chk tmpfs $?
  unshare -m -u -i -n -p -f -U true; chk namespaces $?
  grep -q . /proc/net/unix && [ -e /proc/net/packet ] && [ -e /proc/net/if_inet6 ]; chk sockets $?
  printf '#!/bin/sh\necho script-ok\n' > /tmp/s.sh && chmod +x /tmp/s.sh && [ "$(/tmp/s.sh)" = script-ok ]; chk binfmt-script $?
  [ ! -e /proc/modules ]; chk no-modules $?
  sync
fi
echo "KILN-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
# `poweroff -f` only halts: without ACPI the kernel has no power-off method. A reboot is a triple
# fault (builtin reboot=t) and QEMU with -no-reboot exits.
reboot -f
"""

APPLETS = ("sh mount umount mkdir ls cat uname echo reboot poweroff sleep grep head wc cut awk "
           "readlink basename dirname ip ping unshare true printf chmod rm sync").split()


def sh(*cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def host_khz():
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency") as f:
            return int(f.read())
    except OSError:
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return None


def make_fixtures(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "bin"))
    for d in ("proc", "sys", "dev", "mnt", "tmp"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for a in APPLETS:
        os.symlink("busybox", os.path.join(root, "bin", a))
    with open(os.path.join(root, "init"), "w") as f:
        f.write(INIT)
    os.chmod(os.path.join(root, "init"), 0o755)
    initrd = os.path.join(tmp, "init.cpio.gz")
    files = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files, check=True,
                          capture_output=True).stdout
    with open(initrd, "wb") as f:
        f.write(subprocess.run(["gzip", "-9"], input=cpio, check=True, capture_output=True).stdout)
    src = os.path.join(tmp, "erofs-src")
    os.makedirs(os.path.join(src, "sub"))
    for name, text in (("hello.txt", "hello from erofs\n"), ("delete-me.txt", "x\n"), ("sub/f", "y\n")):
        with open(os.path.join(src, name), "w") as f:
            f.write(text)
    subprocess.run(["mkfs.erofs", os.path.join(tmp, "ro.erofs"), src], check=True, capture_output=True)
    ext4 = os.path.join(tmp, "rw.ext4")
    with open(ext4, "wb") as f:
        f.truncate(64 << 20)
    sh("mkfs.ext4", "-q", "-F", ext4)
    share = os.path.join(tmp, "share")
    os.makedirs(share)
    with open(os.path.join(share, "from-host.txt"), "w") as f:
        f.write("hello over 9p\n")
    return initrd


def qemu_cmd(args, kernel, initrd, tmp, append_extra, full):
    khz = host_khz()
    append = "console=ttyS0 quiet"
    if khz and not args.kvm and not args.no_tsc_hint:
        append += f" tsc_early_khz={khz} tsc=reliable"
    append += " " + append_extra
    cmd = ["qemu-system-x86_64", "-M", "microvm,acpi=off"]
    cmd += ["-accel", "kvm", "-cpu", "host"] if args.kvm else ["-accel", "tcg", "-cpu", "max"]
    cmd += ["-m", "256", "-smp", str(args.smp), "-nodefaults", "-no-user-config", "-nographic",
            "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd, "-append", append,
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=con,path={tmp}/console.sock,server=on,wait=off",
            "-device", "virtconsole,chardev=con,name=kiln.console",
            "-device", "virtio-rng-device"]
    if full:
        cmd += ["-device", "virtio-serial-device,id=ser1",
                "-chardev", f"socket,id=agent,path={tmp}/agent.sock,server=on,wait=off",
                "-device", "virtserialport,bus=ser1.0,chardev=agent,name=kiln.agent",
                "-drive", f"id=d0,file={tmp}/ro.erofs,format=raw,if=none,readonly=on",
                "-device", "virtio-blk-device,drive=d0",
                "-drive", f"id=d1,file={tmp}/rw.ext4,format=raw,if=none",
                "-device", "virtio-blk-device,drive=d1",
                "-fsdev", f"local,id=fs0,path={tmp}/share,security_model=none",
                "-device", "virtio-9p-device,fsdev=fs0,mount_tag=share",
                "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
                "-device", "virtio-balloon-device"]
    return cmd


def run(cmd, timeout, tmp=None, readers=False):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    socks = {}
    out = b""
    t_init = None
    while True:
        if readers and tmp:
            for name in ("console", "agent"):
                path = f"{tmp}/{name}.sock"
                if name not in socks and os.path.exists(path):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        s.connect(path)
                        socks[name] = [s, b""]
                    except OSError:
                        s.close()
        fds = [p.stdout] + [s[0] for s in socks.values()]
        r, _, _ = select.select(fds, [], [], 0.05)
        done = False
        for fd in r:
            if fd is p.stdout:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    done = True
                out += chunk
                if t_init is None and b"KILN-INIT" in out:
                    t_init = time.monotonic() - t0
            else:
                for s in socks.values():
                    if s[0] is fd:
                        try:
                            s[1] += fd.recv(4096)
                        except OSError:
                            pass
        if done:
            break
        if time.monotonic() - t0 > timeout:
            p.kill()
            p.wait()
            return out.decode(errors="replace"), t_init, None, {k: v[1] for k, v in socks.items()}
    rc = p.wait()
    t_exit = time.monotonic() - t0
    return out.decode(errors="replace"), t_init, (rc, t_exit), {k: v[1].decode(errors="replace") for k, v in socks.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", help="kernel to boot (default: bzImage, or vmlinux with --pvh, from the cache)")
    ap.add_argument("--pvh", action="store_true", help="boot vmlinux through its PVH entry point")
    ap.add_argument("--runs", type=int, default=5, help="timing boots (default 5)")
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--kvm", action="store_true", help="use -accel kvm -cpu host")
    ap.add_argument("--no-tsc-hint", action="store_true",
                    help="omit tsc_early_khz=<host kHz> tsc=reliable (added by default under TCG)")
    ap.add_argument("--runs-only", action="store_true", help="skip the full feature boot")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    kernel = args.kernel
    if not kernel:
        entry = subprocess.run([os.path.join(REPO, "scripts", "build-guest-kernel.sh"), "--print-dir"],
                               check=True, capture_output=True, text=True).stdout.strip()
        kernel = os.path.join(entry, "vmlinux" if args.pvh else "bzImage")
    print(f"kernel: {kernel}")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="kiln-kernel-boot-test.") as tmp:
        initrd = make_fixtures(tmp)
        if not args.runs_only:
            failures += full_boot(args, kernel, initrd, tmp)
        inits, exits = [], []
        for _ in range(args.runs):
            out, t_init, ex, _ = run(qemu_cmd(args, kernel, initrd, tmp, "", False), args.timeout)
            if t_init is None or ex is None or ex[0] != 0:
                failures += 1
                print("timing boot FAILED:\n" + out[-2000:])
                continue
            guest = float(out.split("KILN-INIT uptime=")[1].split()[0])
            inits.append((t_init, guest))
            exits.append(ex[1])
        if inits:
            print("timing (s): launch->/init " + " ".join(f"{a:.2f}" for a, _ in inits)
                  + f" (median {statistics.median(a for a, _ in inits):.2f});"
                  + " kernel uptime at /init " + " ".join(f"{g:.2f}" for _, g in inits)
                  + f"; launch->qemu exit median {statistics.median(exits):.2f}")
    print("RESULT:", "PASS" if failures == 0 else f"FAIL ({failures} failures)")
    return 0 if failures == 0 else 1


def full_boot(args, kernel, initrd, tmp):
    failures = 0
    cmd = qemu_cmd(args, kernel, initrd, tmp, f"KILN_TEST=full KILN_SMP={args.smp}", True)
    if args.verbose:
        print(" ".join(cmd))
    out, t_init, ex, host = run(cmd, args.timeout, tmp, readers=True)
    if args.verbose:
        print(out)
    for line in out.splitlines():
        if line.startswith(("KILN-CHECK", "KILN-INFO")):
            print(line)
            if " FAIL" in line:
                failures += 1
    for name, want in (("console", "guest-to-host via hvc0"), ("agent", "guest-to-host via /dev/vport")):
        got = host.get(name, "")
        ok = want in got
        failures += 0 if ok else 1
        print(f"KILN-CHECK host-received-{name} {'ok' if ok else 'FAIL'} {got.strip()!r}")
    if "KILN-DONE" not in out:
        failures += 1
        print("KILN-CHECK reached-end FAIL\n" + out[-3000:])
    if ex is None:
        failures += 1
        print("KILN-CHECK qemu-exits FAIL (killed after timeout)")
    else:
        print(f"KILN-CHECK qemu-exits {'ok' if ex[0] == 0 else 'FAIL'} rc={ex[0]}")
        failures += ex[0] != 0
    try:
        with open(os.path.join(tmp, "share", "from-guest.txt")) as f:
            ok = f.read().strip() == "from-guest"
    except OSError:
        ok = False
    print(f"KILN-CHECK host-sees-9p-write {'ok' if ok else 'FAIL'}")
    failures += not ok
    return failures


if __name__ == "__main__":
    sys.exit(main())

#include "engine/qemu/command_line.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace kiln::engine::qemu {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

VmSpec sample_spec() {
  VmSpec spec;
  spec.name = "web";
  spec.cpus = 2;
  spec.memory_mib = 256;
  spec.kernel = "/k/bzImage";
  spec.initrd = "/k/initramfs.cpio";
  spec.runtime_dir = "/run/kiln/vms/web";
  return spec;
}

std::string value_after(const std::vector<std::string>& args, const std::string& flag, int nth = 0) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag && nth-- == 0) return args[i + 1];
  }
  return {};
}

TEST(QemuCommandLine, MicrovmWithoutAcpiAndFileBackedMemory) {
  auto args = qemu_arguments("/usr/bin/qemu-system-x86_64", sample_spec(), {Accelerator::kTcg, 2096037});
  EXPECT_EQ(args[0], "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(value_after(args, "-machine"), "microvm,acpi=off,memory-backend=ram");
  EXPECT_EQ(value_after(args, "-object"), "memory-backend-memfd,id=ram,size=256M,share=on");
  EXPECT_EQ(value_after(args, "-accel"), "tcg,thread=multi");
  EXPECT_EQ(value_after(args, "-smp"), "2");
  // The engine listens on the sockets and passes them in.
  EXPECT_EQ(value_after(args, "-chardev", 1), "socket,id=agent,fd=4,server=on,wait=off");
  EXPECT_EQ(value_after(args, "-chardev", 2), "socket,id=qmp,fd=3,server=on,wait=off");
  EXPECT_EQ(value_after(args, "-mon"), "chardev=qmp,mode=control");
  EXPECT_THAT(args, Contains("-no-reboot"));
  EXPECT_THAT(args, Contains("virtserialport,chardev=agent,name=kiln.agent"));
}

TEST(QemuCommandLine, RestoreWaitsForTheStateAndAppendsToTheConsoleLog) {
  VmSpec spec = sample_spec();
  auto boot = qemu_arguments("qemu", spec, {});
  EXPECT_THAT(boot, Not(Contains("-incoming")));
  EXPECT_EQ(value_after(boot, "-chardev"), "file,id=console,path=/run/kiln/vms/web/console.log");
  spec.restore_from = "/var/lib/kiln/vms/web/suspended";
  auto restore = qemu_arguments("qemu", spec, {}, StartMode::kIncoming);
  EXPECT_EQ(value_after(restore, "-incoming"), "defer");
  EXPECT_EQ(value_after(restore, "-chardev"), "file,id=console,path=/run/kiln/vms/web/console.log,append=on");
  // Everything the guest sees is the same as at boot, or the saved state would not fit.
  EXPECT_EQ(value_after(restore, "-append"), value_after(boot, "-append"));
  EXPECT_EQ(value_after(restore, "-object"), value_after(boot, "-object"));
}

TEST(QemuCommandLine, TscHintOnlyUnderTcg) {
  VmSpec spec = sample_spec();
  EXPECT_THAT(guest_cmdline(spec, {Accelerator::kTcg, 2096037}),
              HasSubstr("tsc_early_khz=2096037 tsc=reliable"));
  EXPECT_THAT(guest_cmdline(spec, {Accelerator::kKvm, 2096037}), Not(HasSubstr("tsc_early_khz")));
  auto kvm_args = qemu_arguments("qemu", spec, {Accelerator::kKvm, 0});
  EXPECT_EQ(value_after(kvm_args, "-accel"), "kvm");
  EXPECT_EQ(value_after(kvm_args, "-cpu"), "host");
}

TEST(QemuCommandLine, NoWorkloadOnTheKernelCommandLine) {
  // Fork design: a booted template must serve any workload, so only fixed options are on the command line.
  std::string cmdline = guest_cmdline(sample_spec(), {Accelerator::kTcg, 0});
  EXPECT_EQ(cmdline, "console=ttyS0 reboot=t panic=-1 quiet random.trust_cpu=on");
}

TEST(QemuCommandLine, DisksAreNamedBlockdevNodesWithSerials) {
  VmSpec spec = sample_spec();
  spec.disks = {{"/images/a.erofs", true}, {"/vms/web/rw.ext4", false}};
  auto args = qemu_arguments("qemu", spec, {});
  EXPECT_THAT(args, Contains("driver=file,node-name=disk0-file,filename=/images/a.erofs,read-only=on"));
  EXPECT_THAT(args, Contains("driver=raw,node-name=disk1,file=disk1-file,read-only=off"));
  EXPECT_THAT(args, Contains("virtio-blk-device,drive=disk1,serial=kiln-disk1"));
}

TEST(QemuCommandLine, RootDiskIsNamedOnTheKernelCommandLineBySerial) {
  VmSpec spec = sample_spec();
  spec.disks = {{"/images/a.erofs", true}, {"/vms/web/root.ext4", false}};
  spec.root_disk = 1;
  EXPECT_EQ(guest_cmdline(spec, {Accelerator::kKvm, 0}),
            "console=ttyS0 reboot=t panic=-1 quiet random.trust_cpu=on kiln.root=kiln-disk1");
  auto args = qemu_arguments("qemu", spec, {Accelerator::kKvm, 0});
  EXPECT_THAT(value_after(args, "-append"), HasSubstr("kiln.root=kiln-disk1"));
  EXPECT_THAT(args, Contains("virtio-blk-device,drive=disk1,serial=kiln-disk1"));
  // No root disk, or an index that names no disk: nothing on the command line.
  spec.root_disk = -1;
  EXPECT_THAT(guest_cmdline(spec, {}), Not(HasSubstr("kiln.root")));
  spec.root_disk = 2;
  EXPECT_THAT(guest_cmdline(spec, {}), Not(HasSubstr("kiln.root")));
}

TEST(QemuCommandLine, SharesAreVirtio9pMmioDevices) {
  VmSpec spec = sample_spec();
  spec.shares = {{"kilnshare0", "/home/me/src", false}, {"kilnshare1", "/srv/data", true}};
  auto args = qemu_arguments("qemu", spec, {});
  EXPECT_EQ(value_after(args, "-fsdev", 0), "local,id=fs0,path=/home/me/src,security_model=none");
  EXPECT_EQ(value_after(args, "-fsdev", 1), "local,id=fs1,path=/srv/data,security_model=none,readonly=on");
  EXPECT_THAT(args, Contains("virtio-9p-device,fsdev=fs0,mount_tag=kilnshare0"));
  EXPECT_THAT(args, Contains("virtio-9p-device,fsdev=fs1,mount_tag=kilnshare1"));
  EXPECT_THAT(args, Not(Contains(HasSubstr("virtio-9p-pci"))));
  // Shares never reach the kernel command line: the agent mounts them on request.
  EXPECT_THAT(guest_cmdline(spec, {}), Not(HasSubstr("kilnshare")));
  spec.shares = {{"t", "/a,b", false}};
  EXPECT_EQ(value_after(qemu_arguments("qemu", spec, {}), "-fsdev"),
            "local,id=fs0,path=/a,,b,security_model=none");
}

TEST(QemuCommandLine, CommasInPathsAreEscaped) {
  VmSpec spec = sample_spec();
  spec.runtime_dir = "/tmp/a,b";
  spec.memory = {MemoryBacking::Kind::kFile, "/dev/shm/x,y.mem", false};
  auto args = qemu_arguments("qemu", spec, {});
  EXPECT_EQ(value_after(args, "-object"),
            "memory-backend-file,id=ram,size=256M,mem-path=/dev/shm/x,,y.mem,share=off");
  EXPECT_EQ(value_after(args, "-chardev"), "file,id=console,path=/tmp/a,,b/console.log");
}

TEST(QemuCommandLine, TheTcgCodeCacheSizeIsPassedWhenSet) {
  EXPECT_EQ(value_after(qemu_arguments("qemu", sample_spec(), {Accelerator::kTcg, 0, 8}), "-accel"),
            "tcg,thread=multi,tb-size=8");
  EXPECT_EQ(value_after(qemu_arguments("qemu", sample_spec(), {Accelerator::kKvm, 0, 8}), "-accel"), "kvm");
}

TEST(QemuCommandLine, PlaceholderSlotsAreNullDisksOfTheirSize) {
  VmSpec spec = sample_spec();
  spec.disks = {{.read_only = true, .placeholder_bytes = 1 << 30}, {.path = "/vms/web/layer.ext4"}};
  auto args = qemu_arguments("qemu", spec, {});
  // A raw node disk<i> over a protocol node disk<i>-file, placeholder or not: the raw node's child can be
  // swapped (QemuVm::swap_disk) while the device stays attached to it.
  EXPECT_EQ(value_after(args, "-blockdev"),
            "driver=null-co,node-name=disk0-file,size=1073741824,read-zeroes=on,read-only=on");
  EXPECT_EQ(value_after(args, "-blockdev", 1), "driver=raw,node-name=disk0,file=disk0-file,read-only=on");
  EXPECT_EQ(value_after(args, "-blockdev", 2),
            "driver=file,node-name=disk1-file,filename=/vms/web/layer.ext4,read-only=off");
  EXPECT_EQ(value_after(args, "-blockdev", 3), "driver=raw,node-name=disk1,file=disk1-file,read-only=off");
  // The guest finds both by serial, placeholder or not.
  EXPECT_THAT(args, Contains("virtio-blk-device,drive=disk0,serial=kiln-disk0"));
  EXPECT_THAT(args, Contains("virtio-blk-device,drive=disk1,serial=kiln-disk1"));
}

TEST(QemuCommandLine, ShareEntriesAtLaunchOrLaterRemapInodes) {
  VmSpec spec = sample_spec();
  spec.shares = {{.tag = "kilnshare0", .host_path = "/run/share"}};
  // Nothing but the directory itself: its inode numbers are its own.
  EXPECT_EQ(value_after(qemu_arguments("qemu", spec, {}), "-fsdev"),
            "local,id=fs0,path=/run/share,security_model=none");
  // Entries are other filesystems bound in, at launch or while the VM runs: remap keeps their inode numbers
  // from colliding with the share's in the guest.
  spec.shares[0].late_entries = true;
  EXPECT_EQ(value_after(qemu_arguments("qemu", spec, {}), "-fsdev"),
            "local,id=fs0,path=/run/share,security_model=none,multidevs=remap");
  spec.shares[0].late_entries = false;
  spec.shares[0].entries = {{.name = "data", .source = "/srv/data"}};
  EXPECT_EQ(value_after(qemu_arguments("qemu", spec, {}), "-fsdev"),
            "local,id=fs0,path=/run/share,security_model=none,multidevs=remap");
}

}  // namespace
}  // namespace kiln::engine::qemu

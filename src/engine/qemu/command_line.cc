#include "engine/qemu/command_line.h"

#include <fmt/format.h>

namespace kiln::engine::qemu {

VmPaths paths_for(const std::string& runtime_dir) {
  return {.runtime_dir = runtime_dir,
          .qmp_socket = runtime_dir + "/qmp.sock",
          .agent_socket = runtime_dir + "/agent.sock",
          .console_log = runtime_dir + "/console.log",
          .monitor_log = runtime_dir + "/qemu.log"};
}

std::string guest_cmdline(const VmSpec& spec, const HostFacts& host) {
  // reboot=t (triple fault; microvm has no keyboard controller, so reboot=k hangs) + panic=-1 + QEMU's
  // -no-reboot: a guest reboot or panic ends the QEMU process. (Without ACPI, power-off only halts.)
  std::string cmdline = "console=ttyS0 reboot=t panic=-1 quiet random.trust_cpu=on";
  if (host.accelerator == Accelerator::kTcg && host.tsc_khz > 0) {
    // Under TCG the guest's TSC calibration against the emulated PIT can hang boot; tell it the rate.
    cmdline += fmt::format(" tsc_early_khz={} tsc=reliable", host.tsc_khz);
  }
  if (spec.root_disk >= 0 && static_cast<size_t>(spec.root_disk) < spec.disks.size()) {
    // The agent finds the disk by this serial (see qemu_arguments), never by probe order.
    cmdline += fmt::format(" kiln.root=kiln-disk{}", spec.root_disk);
  }
  if (!spec.extra_cmdline.empty()) cmdline += " " + spec.extra_cmdline;
  return cmdline;
}

namespace {
// QEMU option values are comma-separated; a literal comma in a path is written twice.
std::string escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

std::string tcg_accel(const HostFacts& host) {
  if (host.tcg_code_cache_mib == 0) return "tcg,thread=multi";
  return fmt::format("tcg,thread=multi,tb-size={}", host.tcg_code_cache_mib);
}

std::string memory_backend(const VmSpec& spec) {
  const auto& memory = spec.memory;
  std::string share = memory.shared ? "on" : "off";
  if (memory.kind == MemoryBacking::Kind::kFile) {
    return fmt::format("memory-backend-file,id=ram,size={}M,mem-path={},share={}", spec.memory_mib,
                       escape(memory.path), share);
  }
  return fmt::format("memory-backend-memfd,id=ram,size={}M,share={}", spec.memory_mib, share);
}

std::string file_node_options(size_t slot, const DiskSpec& disk) {
  std::string read_only = disk.read_only ? "on" : "off";
  if (disk.path.empty()) {
    // A placeholder: zeros, no file (null-co counts reads, so a test can see the guest read none).
    return fmt::format("driver=null-co,node-name={},size={},read-zeroes=on,read-only={}",
                       slot_file_node(slot), disk.placeholder_bytes, read_only);
  }
  return fmt::format("driver=file,node-name={},filename={},read-only={}", slot_file_node(slot),
                     escape(disk.path), read_only);
}

}  // namespace

std::string slot_node(size_t slot) {
  return fmt::format("disk{}", slot);
}

std::string slot_file_node(size_t slot) {
  return fmt::format("disk{}-file", slot);
}

std::vector<std::string> qemu_arguments(const std::string& qemu_binary, const VmSpec& spec,
                                        const HostFacts& host, StartMode mode) {
  VmPaths paths = paths_for(spec.runtime_dir);
  bool kvm = host.accelerator == Accelerator::kKvm;
  std::vector<std::string> args = {
      qemu_binary,
      "-name",
      fmt::format("guest={},process=kiln-vm:{}", spec.name, spec.name),
      // ACPI off: with it on, QEMU 7.2 puts no virtio_mmio.device= entries on the command line and an
      // ACPI-less kernel finds no devices.
      "-machine",
      "microvm,acpi=off,memory-backend=ram",
      "-accel",
      kvm ? "kvm" : tcg_accel(host),
      "-cpu",
      kvm ? "host" : "max",
      "-smp",
      std::to_string(spec.cpus),
      "-m",
      fmt::format("{}M", spec.memory_mib),
      "-object",
      memory_backend(spec),
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
      "-kernel",
      spec.kernel,
      "-append",
      guest_cmdline(spec, host),
      // A restored VM appends: its console log goes on where the saved VM's ended.
      "-chardev",
      fmt::format("file,id=console,path={}{}", escape(paths.console_log),
                  spec.restore_from.empty() ? "" : ",append=on"),
      "-serial",
      "chardev:console",
      "-chardev",
      fmt::format("socket,id=agent,fd={},server=on,wait=off", kAgentListenFd),
      "-device",
      "virtio-serial-device,max_ports=2",
      "-device",
      "virtserialport,chardev=agent,name=kiln.agent",
      "-device",
      "virtio-rng-device",
      "-chardev",
      fmt::format("socket,id=qmp,fd={},server=on,wait=off", kQmpListenFd),
      "-mon",
      "chardev=qmp,mode=control",
  };
  if (!spec.initrd.empty()) {
    args.insert(args.end(), {"-initrd", spec.initrd});
  }
  if (mode == StartMode::kIncoming) {
    // Start without running the guest; the engine feeds the saved state in over QMP (migrate-incoming).
    args.insert(args.end(), {"-incoming", "defer"});
  }
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const DiskSpec& disk = spec.disks[i];
    std::string read_only = disk.read_only ? "on" : "off";
    // Every slot is a raw node disk<i> over a protocol node (a file, or a placeholder's null-co): the device
    // stays on disk<i> while blockdev-reopen gives it another protocol child (QemuVm::swap_disk).
    args.insert(args.end(), {"-blockdev", file_node_options(i, disk), "-blockdev",
                             fmt::format("driver=raw,node-name={},file={},read-only={}", slot_node(i),
                                         slot_file_node(i), read_only)});
    // The serial lets the agent find a slot by name (/sys/block/vdX/serial), whatever probe order.
    args.insert(args.end(),
                {"-device", fmt::format("virtio-blk-device,drive={},serial=kiln-disk{}", slot_node(i), i)});
  }
  for (size_t i = 0; i < spec.shares.size(); ++i) {
    const ShareSpec& share = spec.shares[i];
    // security_model=none: files keep the host's ownership and the guest's chown is refused, which is what
    // a user sharing their own directory expects (mapped-xattr would hide guest ownership in xattrs).
    // passthrough: the guest's owners and modes are the host's, as a container's bind mount under Docker.
    // Entries are other filesystems bound in (at launch, or later with late_entries): remap keeps their
    // inode numbers from colliding in the guest.
    args.insert(args.end(),
                {"-fsdev",
                 fmt::format("local,id=fs{},path={},security_model={}{}{}", i, escape(share.host_path),
                             share.guest_ownership ? "passthrough" : "none",
                             share.entries.empty() && !share.late_entries ? "" : ",multidevs=remap",
                             share.read_only ? ",readonly=on" : ""),
                 "-device", fmt::format("virtio-9p-device,fsdev=fs{},mount_tag={}", i, escape(share.tag))});
  }
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    // The tap is opened with a virtio-net header (QEMU reads that off the fd), so checksum and segmentation
    // offloads reach the host; a template and its clones agree on it, as the guest negotiated those
    // features before the save.
    args.insert(
        args.end(),
        {"-netdev", fmt::format("tap,id=net{},fd={}", i, kFirstTapFd + static_cast<int>(i)), "-device",
         // An incoming VM's device gets its MAC from the saved state (its template's nic_device_mac).
         fmt::format("virtio-net-device,netdev=net{}{}", i,
                     mode == StartMode::kIncoming
                         ? ""
                         : ",mac=" + (spec.nics[i].mac.empty() ? nic_device_mac(i) : spec.nics[i].mac))});
  }
  return args;
}

}  // namespace kiln::engine::qemu

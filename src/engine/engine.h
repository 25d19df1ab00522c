// The Engine abstraction: one interface over the ways Kiln can run a VM (QEMU today; the built-in kiln-vmm
// where hardware virtualization exists). An Engine launches VmInstances; a VmInstance owns the monitor
// process of one running VM and is used from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/child_process.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::engine {

enum class Accelerator { kKvm, kTcg };
std::string_view to_string(Accelerator accelerator);

struct DiskSpec {
  std::string path;
  bool read_only = false;
};

// A host directory exported to the guest over virtio-9p, fixed at launch (virtio-mmio has no hotplug). The
// guest mounts it by tag (agent MOUNT: source=tag, fstype=9p).
struct ShareSpec {
  std::string tag;        // mount_tag, e.g. "kilnshare0"
  std::string host_path;  // a directory
  bool read_only = false;
};

// Where guest RAM lives. Always file-like, never anonymous, so a booted VM can later be forked
// copy-on-write (see NORTHSTAR "Designed for fork").
struct MemoryBacking {
  enum class Kind { kMemfd, kFile } kind = Kind::kMemfd;
  std::string path;    // kFile: e.g. /dev/shm/kiln-<id>.mem
  bool shared = true;  // share=on: writes reach the file (templates); off: private copy-on-write (clones)
};

struct VmSpec {
  std::string name;  // shows in logs and in the monitor's process title
  unsigned cpus = 1;
  uint64_t memory_mib = 512;
  std::string kernel;           // bzImage or vmlinux
  std::string initrd;           // newc cpio (optionally compressed)
  std::string extra_cmdline;    // appended to Kiln's fixed guest command line
  std::string runtime_dir;      // per-VM host directory: sockets and the console log go here (must exist)
  std::vector<DiskSpec> disks;  // disk i is the guest's virtio-blk disk with serial kiln-disk<i>
  // Index into `disks` of an ext4 disk the agent boots into (kiln.root=kiln-disk<N>); -1: stay in the
  // initramfs.
  int root_disk = -1;
  std::vector<ShareSpec> shares;
  MemoryBacking memory;
  // The monitor dies with the thread that launched it (for `kiln vm run`); off for daemon-managed VMs.
  bool die_with_launcher = true;
  // A directory written by VmInstance::save_state: launch resumes that VM instead of booting (running when
  // launch returns). Its manifest must match this spec's cpus, memory, disks and shares.
  std::string restore_from;
};

enum class VmRunState { kRunning, kPaused, kShutdown, kExited };
std::string_view to_string(VmRunState state);

class VmInstance {
 public:
  virtual ~VmInstance() = default;

  // Connects to the guest agent's channel (a stream socket); the agent may not have answered yet.
  virtual Result<UniqueFd> connect_agent() = 0;
  virtual Result<void> pause() = 0;
  virtual Result<void> resume() = 0;
  virtual Result<VmRunState> run_state() = 0;
  // Forces the VM off at once (the guest gets no say); reaps the monitor.
  virtual Result<void> kill() = 0;
  // Waits up to `timeout` for the monitor to exit on its own (after a guest power-off).
  virtual Result<std::optional<ExitStatus>> wait_for_exit(std::chrono::milliseconds timeout) = 0;
  // After the monitor exited: why, in words for a person ("the guest powered off", "the VM's monitor was
  // killed by signal 9 (Killed)").
  virtual std::string exit_reason() = 0;
  // Readable when the monitor process has exited (for poll loops).
  virtual int exit_fd() const = 0;
  virtual std::string console_log_path() const = 0;
  // The monitor process's pid (recorded so a restarted kilnd can adopt the VM).
  virtual pid_t monitor_pid() const = 0;
  // Forgets the VM without stopping it: it keeps running after this object is gone.
  virtual void release() = 0;
  // Suspends the VM to disk: pauses it, writes its memory and device state into `dir` (existing, empty;
  // snapshot/manifest.h describes the contents), then ends the monitor, so the VM holds no host memory and
  // run_state() reports kExited. Restore with VmSpec::restore_from. The guest's page cache is in the saved
  // memory, so its disks must not change while it is suspended. On failure the VM keeps running.
  virtual Result<void> save_state(const std::string& dir) {
    (void)dir;
    return Error::unsupported("this engine cannot save a VM's state");
  }
  // The last `max_bytes` of the console log, for error messages.
  std::string console_tail(size_t max_bytes = 2048) const;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string_view name() const = 0;
  // What the engine's VMs run on (reported by the API's /info).
  virtual Accelerator accelerator() const = 0;
  virtual Result<std::unique_ptr<VmInstance>> launch(const VmSpec& spec) = 0;
  // Takes over a VM launched earlier from `spec` (by another process, e.g. before kilnd restarted) whose
  // monitor runs as `monitor_pid`. kNotFound when that VM's monitor is no longer running.
  virtual Result<std::unique_ptr<VmInstance>> adopt(const VmSpec& spec, pid_t monitor_pid) = 0;
};

}  // namespace kiln::engine

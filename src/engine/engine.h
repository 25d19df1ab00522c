// The Engine abstraction: one interface over the ways Kiln can run a VM (QEMU today; the built-in kiln-vmm
// where hardware virtualization exists). An Engine launches VmInstances; a VmInstance owns the monitor
// process of one running VM and is used from one thread at a time.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <functional>
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
  std::string path;  // empty: a placeholder (see placeholder_bytes)
  bool read_only = false;
  // With no path: a slot of this size whose reads return zeros, backed by no file. A template's workload
  // slots are placeholders, so nothing of a workload is in it; each clone puts its own disk in the slot.
  // The guest reads a disk's size once, at boot: a placeholder is as large as the largest disk a clone may
  // bring to its slot.
  uint64_t placeholder_bytes = 0;
};

// A host file or directory that appears to the guest as the entry `name` of a share's directory. How one 9p
// device carries all of a container's bind mounts and volumes (QEMU's microvm has only 8 virtio-mmio slots):
// the monitor runs in a mount namespace of its own in which `source` is bind-mounted over
// `<host_path>/<name>`; the host's mount table never changes. read_only is enforced by the host kernel, so
// nothing the guest does can write through it. Needs root.
struct ShareEntry {
  std::string name;    // one path component
  std::string source;  // absolute host path of a directory or a regular file
  bool read_only = false;
};

// A host directory exported to the guest over virtio-9p, fixed at launch (virtio-mmio has no hotplug). The
// guest mounts it by tag (agent MOUNT: source=tag, fstype=9p).
struct ShareSpec {
  std::string tag;        // mount_tag, e.g. "kilnshare0"
  std::string host_path;  // a directory; with entries, the engine makes their mount points in it
  bool read_only = false;
  // Files the guest creates get the guest's owner and mode on the host (9p "passthrough", as a container's
  // bind mount behaves under Docker); off, they keep the monitor's user (what a person sharing their own
  // directory with a VM expects, and works without root).
  bool guest_ownership = false;
  std::vector<ShareEntry> entries;
  // Entries may be added while the VM runs (VmInstance::add_share_entries): a VM forked ahead of need, before
  // the container whose paths it will carry exists. The monitor then always gets a mount namespace of its
  // own, even with no entries at launch. Not part of what a template depends on.
  bool late_entries = false;
};

// A virtio-net NIC whose host end is a tap the caller made (kilnd: in Kiln's network namespace, on the
// network's bridge). The engine passes the tap to the monitor; the caller may close its copy once the VM
// runs. A forked guest keeps its template's MAC in the device's saved state, so the guest sets `mac` itself
// (kilnd's network configuration message) and the engine gives it to the device only at a cold boot.
struct NicSpec {
  std::string mac;                      // "02:42:ac:11:00:02"; empty: nic_device_mac(its index)
  std::shared_ptr<const UniqueFd> tap;  // opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
};

// The device MAC of a VM's NIC slot `index` when its spec gives none: the same for a template and its
// clones (a clone's devices keep their template's MACs), so the guest agent can tell the slots apart by
// their permanent address whatever MAC the guest itself set (agent::InterfaceConfig::device_mac).
std::string nic_device_mac(size_t index);

// `path` after its directory `from` was renamed to `to` (unchanged when it is not inside `from`).
std::string moved_path(const std::string& path, const std::string& from, const std::string& to);

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
  std::vector<NicSpec> nics;  // the guest's eth0, eth1... in order
  MemoryBacking memory;
  // The monitor dies with the thread that launched it (for `kiln vm run`); off for daemon-managed VMs.
  bool die_with_launcher = true;
  // A directory written by VmInstance::save_state or Engine::suspend_running: launch resumes that VM instead
  // of booting (running when launch returns). Its manifest must match this spec's cpus, memory, disks and
  // shares. A suspend_running directory's memory file is mapped private (copy-on-write) in place of
  // `memory`: the VM's RAM then is a private mapping of that file, as a fork's is.
  std::string restore_from;
};

enum class VmRunState { kRunning, kPaused, kShutdown, kExited };
std::string_view to_string(VmRunState state);

// How long each step of starting a VM took ("spawn", "monitor", "load", "resume"...), in order, so a slow
// start can be explained (kilnd logs them and shows them on the VM).
struct StepTiming {
  std::string step;
  std::chrono::microseconds took{0};
};
using StartTimings = std::vector<StepTiming>;

// What a saved template is: where its files are and the machine its guest saw.
struct TemplateFacts {
  std::string dir;
  std::string key;  // what the template was built from (see Engine::template_key)
  std::string memory_path;
  uint64_t memory_bytes = 0;
  unsigned cpus = 0;
  uint64_t memory_mib = 0;
  // Slot layout the guest saw: one read-only flag per disk slot, each slot's size (0: unknown; a clone's
  // disk must fit in it), and the number of 9p shares.
  std::vector<bool> disk_read_only;
  std::vector<uint64_t> disk_capacity;
  size_t shares = 0;
  size_t nics = 0;
};

// A booted guest saved so that VMs can be forked from it: its RAM in a file and its device state. Only an
// Engine makes one (build_template, open_template), after checking it; Engine::fork maps the RAM file
// private (copy-on-write) in every clone, so no VM ever writes to a template. Copyable, immutable.
class VmTemplate {
 public:
  const TemplateFacts& facts() const { return facts_; }
  const std::string& dir() const { return facts_.dir; }
  const std::string& key() const { return facts_.key; }
  const std::string& memory_path() const { return facts_.memory_path; }
  uint64_t memory_bytes() const { return facts_.memory_bytes; }
  unsigned cpus() const { return facts_.cpus; }
  uint64_t memory_mib() const { return facts_.memory_mib; }
  const std::vector<bool>& disk_read_only() const { return facts_.disk_read_only; }
  const std::vector<uint64_t>& disk_capacity() const { return facts_.disk_capacity; }
  size_t shares() const { return facts_.shares; }
  size_t nics() const { return facts_.nics; }

 private:
  friend class Engine;
  explicit VmTemplate(TemplateFacts facts) : facts_(std::move(facts)) {}
  TemplateFacts facts_;
};

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
  // Moves the running VM's runtime directory (its sockets and console log) to `runtime_dir`, which must not
  // exist and must be on the same filesystem: how a warm pool's clone, forked before its VM existed, becomes
  // that VM's. Engine::adopt then finds it there (by its working directory, not its command line).
  virtual Result<void> relocate(const std::string& runtime_dir) {
    (void)runtime_dir;
    return Error::unsupported("this engine cannot move a running VM's files");
  }
  // Suspends the VM to disk: pauses it, writes its memory and device state into `dir` (existing, empty;
  // snapshot/manifest.h describes the contents), then ends the monitor, so the VM holds no host memory and
  // run_state() reports kExited. Restore with VmSpec::restore_from. The guest's page cache is in the saved
  // memory, so its disks must not change while it is suspended. On failure the VM keeps running.
  virtual Result<void> save_state(const std::string& dir) {
    (void)dir;
    return Error::unsupported("this engine cannot save a VM's state");
  }
  // Puts `disk` into disk slot `slot` of the running VM in place of what the slot holds (a placeholder or a
  // disk); the guest's device stays and reads the new disk from then on. How a VM forked ahead of need (a
  // warm pool) gets its container's disks. The guest read the slot's size and read-only flag once, at probe,
  // so `disk` must have the slot's read_only and be no larger than the slot; a disk with no path puts a
  // placeholder of the slot's size back. The guest must not be using the slot's device (nothing mounted from
  // it) and must drop its cached blocks of the device before it reads the new disk. When it cannot, the slot
  // is unchanged and the error says why: kInvalidArgument (no such slot), kFailedPrecondition (read-only
  // flag, size), or the OS's error for a file that cannot be opened.
  virtual Result<void> swap_disk(size_t slot, const DiskSpec& disk) {
    (void)slot, (void)disk;
    return Error::unsupported("this engine cannot change a running VM's disks");
  }
  // Adds `entries` to share `share` of the running VM (see ShareEntry), as if they had been in its spec at
  // launch: the guest sees them in the share's directory (after its next lookup). The share must have been
  // launched with late_entries. Each entry is checked as at launch, and a name the share already has is
  // refused; on an error (naming the path and the cause) no entry of the call is added.
  virtual Result<void> add_share_entries(size_t share, const std::vector<ShareEntry>& entries) {
    (void)share, (void)entries;
    return Error::unsupported("this engine cannot add entries to a running VM's shares");
  }
  // The last `max_bytes` of the console log, for error messages.
  std::string console_tail(size_t max_bytes = 2048) const;
  // How the VM's start was spent (empty for an adopted VM).
  const StartTimings& start_timings() const { return start_timings_; }
  void set_start_timings(StartTimings timings) { start_timings_ = std::move(timings); }

 private:
  StartTimings start_timings_;
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

  // VM fork. A template is built once per key and forked many times; an engine that cannot fork answers
  // kUnsupported (callers then boot cold).
  //
  // The key of the template a VM of `spec` would fork from: a digest of everything the saved guest depends
  // on (engine and its version, kernel and initramfs contents, the machine's command line with per-VM
  // paths left out, CPUs, memory, disk slots and their read-only flags, the host's TSC rate). Disk paths
  // are not part of it: a clone brings its own disks to the template's slots.
  virtual Result<std::string> template_key(const VmSpec& spec) {
    (void)spec;
    return Error::unsupported(fmt::format("the {} engine cannot fork VMs", name()));
  }
  // Boots `spec` with its RAM in `dir`'s memory file, calls `until_idle` with the running VM (it returns
  // once the guest is idle and the host holds no session with its agent), then saves the device state into
  // `dir` (existing, empty) and ends the VM. Its disks should be placeholders: the guest must not read a
  // workload before the fork. On failure `dir` may hold partial files; the caller removes it.
  virtual Result<VmTemplate> build_template(const VmSpec& spec, const std::string& dir,
                                            const std::function<Result<void>(VmInstance&)>& until_idle) {
    (void)spec, (void)dir, (void)until_idle;
    return Error::unsupported(fmt::format("the {} engine cannot fork VMs", name()));
  }
  // A template saved earlier, checked before any VM uses it: its manifest's format version and engine,
  // and its memory file's presence and size. kFailedPrecondition (or kNotFound) saying what is wrong.
  virtual Result<VmTemplate> open_template(const std::string& dir) {
    (void)dir;
    return Error::unsupported(fmt::format("the {} engine cannot fork VMs", name()));
  }
  // Starts a VM of `spec` as a copy-on-write clone of `from`: it resumes where the template was saved.
  // `spec` must have the template's CPUs, memory and slot layout, each disk no larger than its slot (its
  // disks are its own); spec.memory and
  // spec.restore_from are ignored. Running when this returns.
  virtual Result<std::unique_ptr<VmInstance>> fork(const VmTemplate& from, const VmSpec& spec) {
    (void)from, (void)spec;
    return Error::unsupported(fmt::format("the {} engine cannot fork VMs", name()));
  }

  // Instant clone of a running VM (docs/fork.md). Saves `vm` into `dir` (existing, empty) as a one-off
  // template, without ending it: pauses the guest, calls `while_paused` (the caller copies the VM's disks
  // there, so that they match its memory), saves the device state and copies the guest's RAM into `dir`'s
  // memory file (sparse: only pages holding data), and resumes the guest — also when a step fails (a
  // guest the caller had paused stays paused). `key` names the template (role template, manifest v2); give
  // one no template pool uses: nobody but the caller forks from it. Fork the new VM from the returned
  // template with fork(); its memory file is mapped private, so nothing writes to it. On failure `dir` may
  // hold partial files; the caller removes it. kFailedPrecondition for a VM whose RAM is not a shared
  // anonymous file (a VM that is itself a fork maps its template's file private: its RAM cannot be left out
  // of the device state) or whose device state cannot be saved (a mounted 9p share blocks migration).
  virtual Result<VmTemplate> snapshot_running(VmInstance& vm, const std::string& dir, const std::string& key,
                                              const std::function<Result<void>()>& while_paused) {
    (void)vm, (void)dir, (void)key, (void)while_paused;
    return Error::unsupported(fmt::format("the {} engine cannot clone a running VM", name()));
  }
  // Suspend on the same machinery (docs/fork.md "Suspend and restore"): saves `vm` into `dir` (existing,
  // empty) as snapshot_running does — device state, and its RAM copied sparsely into a memory file (made
  // durable) — under a manifest of role suspend-memory, then ends its monitor instead of resuming it, so the
  // VM holds no host memory and run_state() reports kExited. Restore with VmSpec::restore_from: launch maps
  // the memory file private instead of reading it in, so the restored VM's resident memory grows with what
  // its guest touches. Its disks must not change while it is suspended (the guest's page cache is in the
  // memory file). kUnsupported, before the guest is paused and with `dir` untouched, when the VM's RAM cannot
  // be saved this way (it is not a shared anonymous file the engine can read: a VM that is itself a fork,
  // or was restored from such a suspend, maps a file private): VmInstance::save_state streams it instead. On
  // any other failure the VM keeps running (resumed unless it was paused) and `dir` may hold partial files.
  virtual Result<void> suspend_running(VmInstance& vm, const std::string& dir) {
    (void)vm, (void)dir;
    return Error::unsupported(fmt::format("the {} engine cannot suspend a VM into a memory file", name()));
  }

 protected:
  // For engines: a template handle for what they built or checked.
  static VmTemplate make_template(TemplateFacts facts) { return VmTemplate(std::move(facts)); }
  // kFailedPrecondition naming every difference between `from`'s layout and `spec`'s.
  static Result<void> check_forkable(const VmTemplate& from, const VmSpec& spec);
};

}  // namespace kiln::engine

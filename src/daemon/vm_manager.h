// VmManager: the lifecycle of kilnd's VMs. Owns the running VMs (their monitor handles and agent hubs),
// writes every state change to the VmStore before acting on the next, and publishes events. Operations on one
// VM are serialized by that VM's lock; reads (list, inspect) never wait for a slow operation. Thread-safe:
// every HTTP connection thread calls in directly. VMs outlive the manager: shutdown() releases them.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/client/agent_hub.h"
#include "common/unique_fd.h"
#include "daemon/event_bus.h"
#include "daemon/state/vm_store.h"
#include "engine/engine.h"

namespace kiln::image {
class ImageStore;
}

namespace kiln::engine {
class TemplatePool;
struct TemplatePoolConfig;
struct TemplateInfo;
}  // namespace kiln::engine

namespace kiln::daemon {

class WarmPool;
struct PooledVm;

// Fork templates are the engine layer's (shared with `kiln vm run`); kilnd owns one pool of them.
using engine::TemplateInfo;
using engine::TemplatePool;
using engine::TemplatePoolConfig;

// The host end of one of a starting VM's NIC slots: a tap in Kiln's network namespace, which the monitor
// takes over.
struct NicTap {
  std::string name;  // "ktap3"
  UniqueFd fd;
};
struct NetworkAttachment {
  std::vector<VmNic> nics;  // one per VmRecord::networks entry, in order; nic i is in slot i
  // One per NIC slot: the first nics.size() on their networks' bridges, the rest spares on none.
  std::vector<NicTap> taps;
  std::vector<PortPublication> published;  // VmRecord::ports, listening, every host_port chosen
};

// Connects VMs to networks (kilnd's NetworkManager). VmManager calls it from a VM's lock, so calls for one VM
// never overlap.
class VmNetworking {
 public:
  virtual ~VmNetworking() = default;
  // Before the VM's monitor starts: `nic_slots` taps (at least one per network of vm.networks), an address
  // on each network, the first taps on their bridges, and vm.ports listening (a port in use fails the start
  // with Docker's message). On failure nothing is held. DNS names on each network: the request's aliases,
  // plus the VM's name for a VM no container owns. `existing_taps` (one per NIC slot, on no bridge): the
  // VM's monitor runs already with these taps (a warm pool's clone); they are put on the networks' bridges
  // instead of new ones, and the attachment's taps carry their names and no descriptor.
  virtual Result<NetworkAttachment> attach(const VmRecord& vm, size_t nic_slots,
                                           const std::vector<std::string>& existing_taps) = 0;
  Result<NetworkAttachment> attach(const VmRecord& vm, size_t nic_slots) { return attach(vm, nic_slots, {}); }
  // The VM stopped (or its start failed after attach): its addresses, names and listening ports are freed.
  // vm.nics and vm.published say what it held.
  virtual void detach(const VmRecord& vm) = 0;
  // kilnd restarted while the VM ran: takes back what vm.nics and vm.published record (addresses, names,
  // listening ports). The taps survived with the monitor.
  virtual Result<void> adopt(const VmRecord& vm) = 0;
  // A running VM joins one more network on its spare slot `slot`, whose tap is `tap` (on no bridge): an
  // address, its DNS names, the tap on the network's bridge. On failure nothing is held.
  virtual Result<VmNic> connect(const VmRecord& vm, const VmNetworkRequest& request, size_t slot,
                                const std::string& tap) = 0;
  // A running VM leaves the network of `nic` (one of vm.nics): its address and names go, its tap leaves the
  // bridge and becomes a spare again.
  virtual Result<void> disconnect(const VmRecord& vm, const VmNic& nic) = 0;
};

struct VmManagerConfig {
  std::string root;     // --root: state db, vms/<id>/root.ext4
  std::string run_dir;  // --run-dir: vms/<short id>/ sockets and console logs
  std::string kernel;
  std::string initramfs;
  std::string busybox_binary = "/bin/busybox";
  unsigned host_cpus = 1;
  uint64_t host_memory_mib = 0;
  std::chrono::milliseconds agent_timeout = std::chrono::seconds(90);
  image::ImageStore* images = nullptr;  // optional: VMs from image references
  // Fork templates: container VMs start as clones of a booted template. nullptr: every VM boots cold
  // (kilnd --boot=cold).
  TemplatePool* templates = nullptr;
  // Idle clones forked ahead of need (warm_pool.h); a forking start takes one when it can. nullptr: none.
  WarmPool* pool = nullptr;
  // nullptr: VMs get no NIC (vm.networks is ignored).
  VmNetworking* networking = nullptr;
};

// NIC slots of every container VM on a network when kilnd has networking: its networks' NICs and spares, so
// that `docker network connect` can give a running container a NIC (QEMU's microvm has no hotplug), and so
// that containers fork from one template whatever their networks (a container on none has no NIC). A
// container VM's other 5 device slots are the agent's serial, the RNG, the image, the writable layer and the
// mounts' share (see kMaxSharedFolders).
inline constexpr size_t kContainerNicSlots = 3;

// The network a plain VM joins unless told otherwise (Docker's default bridge network).
inline constexpr std::string_view kDefaultNetwork = "bridge";

// A VM label: "cold" makes the VM boot from its kernel instead of forking (docker run --label
// kiln.boot=cold).
inline constexpr std::string_view kBootLabel = "kiln.boot";

// Where a container VM's root is assembled in the guest: the image's EROFS and the writable layer's ext4 are
// mounted beside it and joined by overlayfs there. The container's processes run in it (ContainerSpec::root).
inline constexpr std::string_view kContainerRootInGuest = "/kiln/rootfs";
// QEMU's microvm without ACPI has 8 virtio-mmio slots; a plain VM uses 3 (agent serial, RNG, root disk)
// and each shared folder is a 9p device of its own, so it can share at most 5. (A container's binds and
// volumes all travel in one share instead: kContainerMountsTag.)
inline constexpr size_t kMaxSharedFolders = 5;
// overlayfs's upper and work directories in a container's writable layer (made when the layer is).
inline constexpr std::string_view kLayerUpperDir = "upper";
inline constexpr std::string_view kLayerWorkDir = "work";
// The 9p tag of a container VM's share of host paths (its bind mounts and volumes).
inline constexpr std::string_view kContainerMountsTag = "kilnmounts";
// Labels a container's VM carries, so operators can tell which container it runs.
inline constexpr std::string_view kContainerIdLabel = "kiln.container.id";
inline constexpr std::string_view kContainerNameLabel = "kiln.container.name";
inline constexpr std::string_view kContainerImageLabel = "kiln.container.image";

struct CreateVmRequest {
  std::string name;  // empty: generated
  std::optional<unsigned> cpus;
  std::optional<uint64_t> memory_mib;
  std::optional<uint64_t> disk_mib;
  RootSource source;
  std::string kernel;
  std::map<std::string, std::string> labels;
  std::vector<SharedFolder> folders;  // ids assigned by the manager
  std::string tag;
  // Required with RootSource::Kind::kContainer (and only then): the container's id. disk_mib is then the
  // size of its sparse writable layer.
  std::string owner;
  std::vector<ContainerMount> container_mounts;  // kContainer only
  // Networks the VM's NICs join while it runs. Unset: a plain VM joins the default network (kDefaultNetwork)
  // when kilnd has networking; a container's VM none (its owner sets them with set_networking).
  std::optional<std::vector<VmNetworkRequest>> networks;
  std::vector<PortPublication> ports;
};

// An instant clone of a VM (clone_vm): its name (empty: generated) and whether it starts now.
struct CloneVmRequest {
  std::string name;
  bool start = true;
  std::optional<std::string> tag;             // unset: the source's
  std::map<std::string, std::string> labels;  // set on top of the source's
};

struct UpdateVmRequest {
  std::optional<unsigned> cpus;
  std::optional<uint64_t> memory_mib;
  std::optional<std::map<std::string, std::string>> labels;
};

struct VmFilter {
  std::map<std::string, std::string> labels;  // all must match; an empty value matches any value of the key
  std::vector<std::string> label_keys;        // "key" without "=value"
  std::optional<VmState> state;
  std::string name;  // substring, as docker ps --filter name=
};

// A shared folder to add: where it lands, and whether the running VM got it now.
struct FolderAdded {
  SharedFolder folder;
  bool applied_now = false;
  std::string note;
};

struct ExecRequest {
  agent::ProcessSpec process;
  bool attach_stdin = false;
  bool attach_stdout = true;
  bool attach_stderr = true;
};

// Checks a shared folder's paths; a bare guest name becomes /mnt/hgfs/NAME (where AppCatalyst guests found
// their shares).
Result<void> normalize_shared_folder(SharedFolder& folder);

class VmManager {
 public:
  static Result<std::unique_ptr<VmManager>> create(VmManagerConfig config, VmStore& store, EventBus& events,
                                                   engine::Engine& engine);
  ~VmManager();
  VmManager(const VmManager&) = delete;
  VmManager& operator=(const VmManager&) = delete;

  // At daemon start: re-attaches to VMs whose monitor survived, marks the others stopped (with the reason),
  // removes half-created VMs.
  Result<void> recover();
  // Releases every running VM (they keep running) and stops background threads.
  void shutdown();

  // A VM owned by a container (VmRecord::owner) is started, reconfigured, suspended and removed only by its
  // owner: those operations take `as_owner`, and anyone else gets kFailedPrecondition naming the container.
  // Stopping, killing and pausing it are open to all (the container sees its VM stop as an exit).
  Result<VmRecord> create_vm(CreateVmRequest request);
  // A new VM that is a copy of `source` (vm_clone.cc, docs/fork.md "Instant clone"). A running source is
  // paused while its root disk is copied and its memory and devices are saved, and resumes (a paused one
  // stays paused); the new VM then starts forked from that moment (not booted), with its own name, machine
  // id, RNG seed and addresses. A stopped source's disk is copied and the new VM boots. Same CPUs, memory,
  // disk size, kernel, labels and networks (not fixed addresses, MACs, aliases or published ports); no
  // shared folders. kNotFound for an unknown source, kAlreadyExists for a name in use, kFailedPrecondition
  // for a source that is suspended (or starting, stopping...), a container's, a running fork or sharing
  // folders. On failure nothing of the new VM is left and the source runs on as before.
  Result<VmRecord> clone_vm(const std::string& source, CloneVmRequest request);
  Result<std::vector<VmRecord>> list(const VmFilter& filter);
  Result<VmRecord> inspect(const std::string& id_or_name);
  Result<VmRecord> update(const std::string& id_or_name, const UpdateVmRequest& request,
                          std::string_view as_owner = {});
  // Replaces the networks and published ports the VM gets at its next start. A running VM also joins the
  // new networks at once (on spare NIC slots; kFailedPrecondition when it has none left) and leaves the ones
  // gone, without a restart; its published ports cannot change while it runs. kFailedPrecondition while it
  // is paused, suspended, starting or stopping.
  Result<VmRecord> set_networking(const std::string& id_or_name, std::vector<VmNetworkRequest> networks,
                                  std::vector<PortPublication> ports, std::string_view as_owner = {});
  Result<void> remove(const std::string& id_or_name, bool force, std::string_view as_owner = {});

  Result<VmRecord> start(const std::string& id_or_name, std::string_view as_owner = {});
  Result<VmRecord> stop(const std::string& id_or_name, std::chrono::milliseconds grace);
  Result<VmRecord> kill(const std::string& id_or_name);
  Result<VmRecord> restart(const std::string& id_or_name, std::chrono::milliseconds grace,
                           std::string_view as_owner = {});
  Result<VmRecord> pause(const std::string& id_or_name);
  Result<VmRecord> resume(const std::string& id_or_name);
  Result<VmRecord> suspend(const std::string& id_or_name, std::string_view as_owner = {});

  // Runs a process in a running VM, bridged to `io.client` (a raw stream; see AgentHub::exec). `io` is moved
  // from only on success, so on failure the caller can still tell its client why.
  Result<agent::ExecHandle> exec(const std::string& id_or_name, const agent::ProcessSpec& process,
                                 agent::ExecIo& io);

  // Takes over a process that a previous kilnd started with keep_on_disconnect (the agent kept it running
  // across the restart), bridged to `io.client` like exec's; `io` is moved from only on success.
  Result<agent::ExecHandle> reattach(const std::string& id_or_name, agent::ProcessId process, bool tty,
                                     const agent::ReattachRequest& request, agent::ExecIo& io);

  Result<FolderAdded> add_folder(const std::string& id_or_name, SharedFolder folder,
                                 std::string_view as_owner = {});
  Result<void> remove_folder(const std::string& id_or_name, const std::string& folder_id,
                             std::string_view as_owner = {});
  Result<VmRecord> set_folders_enabled(const std::string& id_or_name, bool enabled,
                                       std::string_view as_owner = {});

  // Fork templates (docs/fork.md). kFailedPrecondition when kilnd boots cold (no templates).
  Result<std::vector<TemplateInfo>> list_templates();
  // Builds (or finds) the template container VMs of this size fork from; its listing.
  Result<TemplateInfo> warm_template(std::optional<unsigned> cpus, std::optional<uint64_t> memory_mib);
  // Removes a template by key or unique key prefix; kFailedPrecondition (409) while a running VM uses it.
  Result<void> remove_template(const std::string& key_or_prefix);

  // The serial console log file of the VM (may not exist before its first start).
  Result<std::string> console_log_path(const std::string& id_or_name);
  // Files and sockets of a VM.
  std::string vm_dir(const std::string& id) const;
  std::string runtime_dir(const std::string& id) const;
  // A container VM's share directory: its mount points for the host paths the guest sees (engine ShareEntry).
  std::string container_share_dir(const std::string& id) const { return runtime_dir(id) + "/mounts"; }
  // A container VM's writable layer (sparse ext4).
  std::string container_layer_path(const std::string& id) const { return vm_dir(id) + "/layer.ext4"; }
  // Where a suspended VM's memory and device state live.
  std::string suspend_dir(const std::string& id) const { return vm_dir(id) + "/suspend"; }

  const VmManagerConfig& config() const { return config_; }

 private:
  struct RunningVm;
  struct Slot;

  VmManager(VmManagerConfig config, VmStore& store, EventBus& events, engine::Engine& engine);
  std::shared_ptr<Slot> slot_for(const std::string& id);
  Result<void> validate(const CreateVmRequest& request) const;
  // create_vm, with `build_root` (when set) making the new VM's files in vm_dir instead of its request's
  // source (clone_vm: a running VM's disk, copied while it is paused). Its failure removes the VM.
  Result<VmRecord> create_record(CreateVmRequest request,
                                 const std::function<Result<void>(const VmRecord&)>& build_root);
  Result<void> validate_resources(unsigned cpus, uint64_t memory_mib) const;
  engine::VmSpec spec_for(const VmRecord& vm) const;
  Result<void> save(VmRecord& vm, VmState state, std::string reason = {});
  void publish(const VmRecord& vm, std::string action, Json attributes = Json::object());

  // Lifecycle steps; the caller holds the slot's lock.
  // `fork_from`: the VM starts as a clone of that (an instant clone's one-off snapshot) instead.
  Result<void> boot(Slot& slot, VmRecord& vm, const engine::VmTemplate* fork_from = nullptr);
  // Starts the VM's monitor: forked from `fork_from`, or from its template when it can be, else booted.
  // Records how.
  Result<std::unique_ptr<engine::VmInstance>> launch_monitor(const engine::VmSpec& spec, VmRecord& vm,
                                                             const engine::VmTemplate* fork_from = nullptr);
  // An idle clone from the warm pool for the VM, or nullopt (no pool, the VM boots, none ready).
  std::optional<PooledVm> take_pooled(const engine::VmSpec& spec, const VmRecord& vm);
  // Makes a pool clone the VM: its runtime directory, disks and share entries (networking is attached to its
  // taps already). On failure the clone is killed.
  Result<std::unique_ptr<engine::VmInstance>> assign_pooled(PooledVm pooled, const engine::VmSpec& spec,
                                                            VmRecord& vm);
  bool forks(const VmRecord& vm, const engine::VmSpec& spec) const;
  Result<void> connect_agent(Slot& slot, VmRecord& vm);
  Result<void> mount_folders(Slot& slot, const VmRecord& vm);
  Result<void> mount_container_root(Slot& slot, const VmRecord& vm);
  // A forked VM's own clock, hostname, RNG seed, machine id and (container) root, in one agent message.
  Result<void> give_clone_identity(Slot& slot, const VmRecord& vm);
  // Tells the guest the addresses vm.nics holds (CONFIGURE_NETWORK).
  Result<void> configure_guest_network(Slot& slot, const VmRecord& vm);
  // A running VM leaves the networks `networks` no longer names and joins the new ones (vm_live_networks.cc);
  // vm.networks and vm.nics are saved as they are even when a step fails.
  Result<void> change_live_networks(Slot& slot, VmRecord& vm, std::vector<VmNetworkRequest> networks);
  Result<void> apply_live_networks(
      VmRecord& vm, const std::vector<VmNetworkRequest>& networks,
      const std::function<Result<void>(std::vector<agent::InterfaceConfig>)>& configure);
  Result<void> build_container_disks(VmRecord& vm);
  void sync_guest_clock(Slot& slot, const VmRecord& vm);
  void name_guest(Slot& slot, const VmRecord& vm);  // guest hostname = the VM's name
  Result<void> shut_down(Slot& slot, VmRecord& vm, std::chrono::milliseconds grace, std::string reason);
  Result<void> force_off(Slot& slot, VmRecord& vm, std::string reason, std::string action);
  Result<void> discard_suspended(VmRecord& vm);
  Result<VmRecord> locked(const std::string& id_or_name,
                          const std::function<Result<void>(Slot&, VmRecord&)>& operation);

  // The monitor watcher: one thread noticing VMs whose monitor exited on its own.
  void watch_monitors();
  void wake_watcher();
  void on_monitor_exit(const std::string& id);
  // Starts (or restarts) watching the VM's monitor; stops watching it.
  void watch(const std::string& id, const engine::VmInstance& instance);
  void unwatch(const std::string& id);

  VmManagerConfig config_;
  VmStore& store_;
  EventBus& events_;
  engine::Engine& engine_;

  std::mutex slots_mutex_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;

  std::mutex watch_mutex_;
  // What the watcher polls. An entry can be replaced or dropped while the watcher polls its fd (a failed
  // suspend re-watches the VM; a stop and a start replace it): the generation tells the watcher whether the
  // entry it saw fire is still the current one.
  struct Watched {
    UniqueFd exit_fd;  // a dup of the monitor's exit fd
    uint64_t generation = 0;
  };
  std::map<std::string, Watched> watched_;
  uint64_t watch_generation_ = 0;
  UniqueFd watcher_wakeup_;
  bool stopping_ = false;
  std::thread watcher_;
};

}  // namespace kiln::daemon

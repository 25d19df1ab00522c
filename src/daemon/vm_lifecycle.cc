// VmManager's lifecycle operations: start, stop, kill, restart, pause, resume, exec, shared folders.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "common/log.h"
#include "common/units.h"
#include "daemon/vm_manager.h"
#include "daemon/vm_slot.h"
#include "daemon/warm_pool.h"
#include "engine/template_pool.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;

constexpr auto kAgentShutdownTimeout = std::chrono::seconds(5);
constexpr auto kMountTimeout = std::chrono::seconds(20);

Error state_conflict(const VmRecord& vm, std::string_view operation) {
  return Error::failed_precondition(
      fmt::format("cannot {} VM {}: it is {}", operation, vm.name, to_string(vm.state)));
}

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return static_cast<double>(took.count()) / 1000.0;
}

// "spawn=4.8 monitor=47.7 load=4.5 agent=60.1 clone-init=140.3" (ms), for the log.
std::string timings_text(const VmRecord& vm) {
  std::string text;
  for (const auto& [step, ms] : vm.start_timings)
    text += fmt::format("{}{}={:.1f}", text.empty() ? "" : " ", step, ms);
  return text;
}

// What the agent is told about the VM's NICs at a start; the first network with a gateway routes by default.
std::vector<agent::InterfaceConfig> guest_interfaces(const VmRecord& vm) {
  std::vector<agent::InterfaceConfig> out;
  for (const auto& nic : vm.nics) {
    out.push_back(guest_interface(nic));
    out.back().dns = nic.dns;
  }
  return out;
}

// A container VM on any network has spare NIC slots (kContainerNicSlots) for the networks it joins while
// running. One on none has no NIC at all (its guest shows only lo, as Docker's none does; Docker refuses to
// connect it anyway).
size_t nic_slots(const VmRecord& vm) {
  if (vm.source.kind == RootSource::Kind::kContainer && !vm.networks.empty())
    return std::max(vm.networks.size(), kContainerNicSlots);
  return vm.networks.size();
}

// By position: folder ids may be long or odd, and a 9p mount tag must be short.
std::string share_tag(size_t index) {
  return "kilnshare" + std::to_string(index);
}

}  // namespace

agent::InterfaceConfig guest_interface(const VmNic& nic) {
  return {.mac = nic.mac,
          .address = fmt::format("{}/{}", nic.ipv4, nic.prefix_length),
          .gateway = nic.gateway,
          .device_mac = engine::nic_device_mac(nic.slot)};
}

engine::VmSpec VmManager::spec_for(const VmRecord& vm) const {
  engine::VmSpec spec{.name = vm.name,
                      .cpus = vm.cpus,
                      .memory_mib = vm.memory_mib,
                      .kernel = vm.kernel.empty() ? config_.kernel : vm.kernel,
                      .initrd = config_.initramfs,
                      .runtime_dir = runtime_dir(vm.id),
                      .die_with_launcher = false};
  if (vm.source.kind == RootSource::Kind::kContainer) {
    // Stays in the initramfs: the agent assembles the container's root from these two (mount_container_root).
    spec.disks = {{.path = vm.image_rootfs, .read_only = true}, {.path = container_layer_path(vm.id)}};
    // Every container VM has the one share its bind mounts and volumes travel in (empty without any), so all
    // containers fork from one template whatever their mounts.
    engine::ShareSpec mounts{.tag = std::string(kContainerMountsTag),
                             .host_path = container_share_dir(vm.id),
                             .guest_ownership = true};
    for (size_t i = 0; i < vm.container_mounts.size(); ++i) {
      const ContainerMount& mount = vm.container_mounts[i];
      if (mount.kind != ContainerMount::Kind::kHostPath) continue;
      mounts.entries.push_back(
          {.name = std::to_string(i), .source = mount.host_path, .read_only = mount.read_only});
    }
    spec.shares.push_back(std::move(mounts));
  } else {
    spec.disks = {{.path = vm_dir(vm.id) + "/root.ext4"}};
    spec.root_disk = 0;
  }
  // One NIC per network (their taps come from the networks at start), and a container's spares: the count is
  // part of the VM's hardware, so of its template too. Every device gets its slot's MAC (nic_device_mac) and
  // the guest sets the network's MAC itself, as a clone must.
  if (config_.networking) spec.nics.resize(nic_slots(vm));
  if (vm.folders_enabled) {
    for (size_t i = 0; i < vm.folders.size(); ++i) {
      const auto& folder = vm.folders[i];
      spec.shares.push_back(
          {.tag = share_tag(i), .host_path = folder.host_path, .read_only = folder.read_only});
    }
  }
  return spec;
}

Result<void> VmManager::connect_agent(Slot& slot, VmRecord& vm) {
  RunningVm& running = *slot.running;
  UniqueFd channel = KILN_TRY_CONTEXT(running.instance->connect_agent(), "connect to the VM's agent");
  std::string id = vm.id;
  running.hub = KILN_TRY_CONTEXT(
      agent::AgentHub::start(std::move(channel), config_.agent_timeout,
                             [this, id](const Error& error) {
                               log::debug("agent channel closed", {{"vm", id}, {"reason", error.message()}});
                             }),
      "the VM's agent did not answer");
  auto info = KILN_TRY(running.hub->call([](agent::AgentConnection& connection) -> Result<agent::HelloReply> {
    return connection.agent_info();
  }));
  if (info.root && !info.root->mounted) {
    return Error::unavailable(fmt::format("the VM's root disk could not be mounted: {}", info.root->error));
  }
  return ok();
}

Result<void> VmManager::mount_folders(Slot& slot, const VmRecord& vm) {
  if (!vm.folders_enabled) return ok();
  for (size_t i = 0; i < vm.folders.size(); ++i) {
    const auto& folder = vm.folders[i];
    agent::MountRequest request{.source = share_tag(i),
                                .target = folder.guest_path,
                                .fstype = "9p",
                                .options = std::string(agent::kShareMountOptions),
                                .read_only = folder.read_only};
    KILN_TRY_CONTEXT(slot.running->hub->call([&](agent::AgentConnection& connection) {
      return connection.mount(request, kMountTimeout);
    }),
                     fmt::format("mount shared folder {} at {}", folder.host_path, folder.guest_path));
  }
  return ok();
}

namespace {

// Where the container VM's share of host paths is mounted in the guest; entry N is its container mount N.
constexpr std::string_view kContainerMountsInGuest = "/kiln/mounts";

// Parents before children: /data must be mounted before /data/cache, or it would hide it.
size_t path_depth(const std::string& path) {
  return static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
}

}  // namespace

// How the agent assembles a container's root: disk 0 is the image (EROFS, shared read-only by every
// container of it), disk 1 the writable layer, joined by overlayfs; then the container's own mounts inside
// it.
std::vector<agent::MountRequest> container_root_mounts(const VmRecord& vm) {
  std::vector<agent::MountRequest> mounts = {
      {.source = "serial:kiln-disk0", .target = "/kiln/image", .fstype = "erofs", .read_only = true},
      // noinit_itable: the layer is a sparse file made with lazy_itable_init; its unused inode tables read
      // as zeros already, and the kernel's lazy-init thread would write those zeros out (a 10 GiB layer grew
      // to ~230 MiB on the host after a minute idle) while burning the guest's CPU.
      {.source = "serial:kiln-disk1", .target = "/kiln/layer", .fstype = "ext4", .options = "noinit_itable"},
      {.source = "overlay",
       .target = std::string(kContainerRootInGuest),
       .fstype = "overlay",
       .options = fmt::format("lowerdir=/kiln/image,upperdir=/kiln/layer/{},workdir=/kiln/layer/{}",
                              kLayerUpperDir, kLayerWorkDir)},
  };
  if (vm.container_mounts.empty()) return mounts;
  bool host_paths =
      std::any_of(vm.container_mounts.begin(), vm.container_mounts.end(),
                  [](const auto& mount) { return mount.kind == ContainerMount::Kind::kHostPath; });
  if (host_paths) {
    mounts.push_back({.source = std::string(kContainerMountsTag),
                      .target = std::string(kContainerMountsInGuest),
                      .fstype = "9p",
                      .options = std::string(agent::kShareMountOptions)});
  }
  std::vector<size_t> order(vm.container_mounts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return path_depth(vm.container_mounts[a].destination) < path_depth(vm.container_mounts[b].destination);
  });
  for (size_t i : order) {
    const ContainerMount& mount = vm.container_mounts[i];
    if (mount.kind == ContainerMount::Kind::kTmpfs) {
      mounts.push_back({.source = "tmpfs",
                        .target = mount.destination,
                        .fstype = "tmpfs",
                        .options = mount.options,
                        .read_only = mount.read_only,
                        .root = std::string(kContainerRootInGuest)});
    } else {
      mounts.push_back({.source = fmt::format("{}/{}", kContainerMountsInGuest, i),
                        .target = mount.destination,
                        .fstype = "bind",
                        .read_only = mount.read_only,
                        .root = std::string(kContainerRootInGuest),
                        .copy_up = mount.copy_up});
    }
  }
  return mounts;
}

Result<void> VmManager::mount_container_root(Slot& slot, const VmRecord& vm) {
  if (vm.source.kind != RootSource::Kind::kContainer) return ok();
  auto& hub = *slot.running->hub;
  bool supported = KILN_TRY(hub.call([](agent::AgentConnection& connection) -> Result<bool> {
    return connection.has_capability("mount_serial");
  }));
  if (!supported) {
    return Error::unsupported(
        "the guest agent is too old to assemble a container's root (it lacks capability mount_serial)");
  }
  if (!vm.container_mounts.empty()) {
    bool in_root = KILN_TRY(hub.call([](agent::AgentConnection& connection) -> Result<bool> {
      return connection.has_capability("mount_in_root");
    }));
    if (!in_root)
      return Error::unsupported(
          "the guest agent is too old for a container's mounts (it lacks capability mount_in_root)");
  }
  for (const auto& request : container_root_mounts(vm)) {
    KILN_TRY_CONTEXT(hub.call([&](agent::AgentConnection& connection) {
      return connection.mount(request, kMountTimeout);
    }),
                     fmt::format("assemble the container's root ({})", request.target));
  }
  return ok();
}

Result<void> VmManager::configure_guest_network(Slot& slot, const VmRecord& vm) {
  if (vm.nics.empty()) return ok();
  agent::NetworkConfigRequest request{.interfaces = guest_interfaces(vm)};
  KILN_TRY_CONTEXT(slot.running->hub->call([&](agent::AgentConnection& connection) {
    return connection.configure_network(request);
  }),
                   "configure the guest's network");
  return ok();
}

Result<void> VmManager::give_clone_identity(Slot& slot, const VmRecord& vm) {
  // One message: the template's clock, name, RNG state and machine id are every clone's until this.
  agent::CloneInitRequest request{.hostname = vm.name, .machine_id = vm.id.substr(0, 32)};
  if (vm.source.kind == RootSource::Kind::kContainer) request.mounts = container_root_mounts(vm);
  request.network = guest_interfaces(vm);
  auto reply = KILN_TRY_CONTEXT(slot.running->hub->call([&](agent::AgentConnection& connection) {
    return connection.clone_init(request, kMountTimeout);
  }),
                                "give the forked VM its identity");
  // Most of a fork's clone-init step is the guest's work (TCG): its own split, for the debug log.
  log::debug("clone identity applied",
             {{"vm", vm.name}, {"guest_ms", agent::format_clone_init_steps(reply)}});
  return ok();
}

void VmManager::name_guest(Slot& slot, const VmRecord& vm) {
  if (!slot.running || !slot.running->hub) return;
  // A VM answers to its name, as hosts and Vagrant boxes do. An old agent without the capability keeps its
  // default: worth a log line, not a failed start.
  auto set = slot.running->hub->call(
      [&](agent::AgentConnection& connection) { return connection.set_hostname(vm.name); });
  if (!set)
    log::warn("could not set the guest hostname", {{"vm", vm.name}, {"error", set.error().message()}});
}

void VmManager::sync_guest_clock(Slot& slot, const VmRecord& vm) {
  if (!slot.running || !slot.running->hub) return;
  auto set =
      slot.running->hub->call([](agent::AgentConnection& connection) { return connection.set_clock(); });
  if (!set) log::warn("could not set the guest clock", {{"vm", vm.name}, {"error", set.error().message()}});
}

bool VmManager::forks(const VmRecord& vm, const engine::VmSpec& spec) const {
  if (config_.templates == nullptr) return false;
  if (auto label = vm.labels.find(std::string(kBootLabel));
      label != vm.labels.end() && label->second == "cold")
    return false;
  // Containers fork (their one share is a slot every container template has). A VM with its own root disk
  // switches root at boot, and a template cannot know which root its clones will have; a plain VM's shared
  // folders vary in number: both boot cold (for now).
  return vm.source.kind == RootSource::Kind::kContainer && spec.root_disk < 0;
}

Result<std::unique_ptr<engine::VmInstance>> VmManager::launch_monitor(const engine::VmSpec& spec,
                                                                      VmRecord& vm,
                                                                      const engine::VmTemplate* fork_from) {
  vm.start_timings.clear();
  vm.template_key.clear();
  vm.start_mode = "boot";
  vm.start_pooled = false;
  auto record = [&](const engine::VmInstance& instance) {
    for (const auto& step : instance.start_timings())
      vm.start_timings.emplace_back(step.step, static_cast<double>(step.took.count()) / 1000.0);
  };
  if (fork_from != nullptr) {
    auto forked = KILN_TRY(engine_.fork(*fork_from, spec));
    vm.start_mode = "fork";
    vm.template_key = fork_from->key();
    record(*forked);
    return forked;
  }
  if (spec.restore_from.empty() && forks(vm, spec)) {
    auto started = std::chrono::steady_clock::now();
    bool built = false;
    auto found = config_.templates->template_for(spec, &built);
    if (found) {
      if (built) {
        vm.start_timings.emplace_back("template-build", elapsed_ms(started));
      }
      auto forked = engine_.fork(*found, spec);
      if (forked) {
        vm.start_mode = "fork";
        vm.template_key = found->key();
        record(**forked);
        return forked;
      }
      log::warn("could not fork the VM; booting it", {{"vm", vm.name}, {"error", forked.error().message()}});
      // A template whose files changed under kilnd is checked (and rebuilt if need be) at the next start.
      if (forked.error().category() == ErrorCategory::kFailedPrecondition)
        config_.templates->forget(found->key());
    } else {
      log::warn("no template to fork the VM from; booting it",
                {{"vm", vm.name}, {"error", found.error().message()}});
    }
  }
  auto launched = KILN_TRY(engine_.launch(spec));
  if (!spec.restore_from.empty()) vm.start_mode = "restore";
  record(*launched);
  return launched;
}

std::optional<PooledVm> VmManager::take_pooled(const engine::VmSpec& spec, const VmRecord& vm) {
  if (config_.pool == nullptr || !forks(vm, spec) || !config_.pool->can_serve(spec)) return std::nullopt;
  auto key = engine_.template_key(spec);
  if (!key) return std::nullopt;  // launch_monitor says why when it looks for the template
  return config_.pool->take(*key, spec);
}

Result<std::unique_ptr<engine::VmInstance>> VmManager::assign_pooled(PooledVm pooled,
                                                                     const engine::VmSpec& spec,
                                                                     VmRecord& vm) {
  auto started = std::chrono::steady_clock::now();
  vm.start_timings.clear();
  for (const auto& step : pooled.fork_timings)
    vm.start_timings.emplace_back("pool-" + step.step, static_cast<double>(step.took.count()) / 1000.0);
  auto made = [&]() -> Result<void> {
    engine::VmInstance& instance = *pooled.instance;
    // Recorded before the clone moves in: a kilnd that dies during the hand-over leaves either a clone in the
    // pool's directory (the next kilnd's pool kills it) or this VM's half-started monitor (recovery kills
    // it).
    vm.monitor_pid = instance.monitor_pid();
    KILN_TRY(store_.update(vm));
    // The clone's directory becomes the VM's (sockets, console log, share); the last run's console is kept.
    std::string dir = runtime_dir(vm.id);
    std::error_code error;
    if (fs::exists(dir + "/console.log.prev", error))
      fs::rename(dir + "/console.log.prev", pooled.dir + "/console.log.prev", error);
    fs::remove_all(dir, error);
    if (error) return Error::internal(fmt::format("remove {}: {}", dir, error.message()));
    KILN_TRY(instance.relocate(dir));
    pooled.dir.clear();
    for (size_t i = 0; i < spec.disks.size(); ++i)
      KILN_TRY_CONTEXT(instance.swap_disk(i, spec.disks[i]), fmt::format("put disk {} in its slot", i));
    for (size_t i = 0; i < spec.shares.size(); ++i) {
      if (!spec.shares[i].entries.empty())
        KILN_TRY_CONTEXT(instance.add_share_entries(i, spec.shares[i].entries), "bind the VM's host paths");
    }
    return ok();
  }();
  // Once it moved in, the pool's pid file is stale either way: the VM's pid is in its record.
  std::error_code ignored;
  if (pooled.dir.empty()) fs::remove(runtime_dir(vm.id) + "/" + std::string(kPoolPidFile), ignored);
  if (!made) {
    vm.monitor_pid = 0;
    WarmPool::discard(std::move(pooled));
    return made.error();
  }
  vm.start_mode = "fork";
  vm.start_pooled = true;
  vm.template_key = pooled.template_key;
  vm.start_timings.emplace_back("assign", elapsed_ms(started));
  log::debug("VM is a warm pool clone", {{"vm", vm.name}, {"template", vm.template_key.substr(0, 12)}});
  return std::move(pooled.instance);
}

Result<void> VmManager::boot(Slot& slot, VmRecord& vm, const engine::VmTemplate* fork_from) {
  std::string dir = runtime_dir(vm.id);
  std::error_code error;
  // Sockets of an earlier run would make QEMU fail to bind; the console log is kept as console.log.prev.
  if (fs::exists(dir + "/console.log", error))
    fs::rename(dir + "/console.log", dir + "/console.log.prev", error);
  for (const char* stale : {"/agent.sock", "/qmp.sock"}) fs::remove(dir + stale, error);
  fs::create_directories(dir, error);
  if (error) return Error::internal(fmt::format("create {}: {}", dir, error.message()));
  if (vm.source.kind == RootSource::Kind::kContainer) {
    fs::create_directories(container_share_dir(vm.id), error);
    if (error)
      return Error::internal(fmt::format("create {}: {}", container_share_dir(vm.id), error.message()));
  }
  for (const auto& folder : vm.folders) {
    if (vm.folders_enabled && !fs::is_directory(folder.host_path, error)) {
      return Error::failed_precondition(
          fmt::format("shared folder {} no longer exists on the host", folder.host_path));
    }
  }

  bool restoring = vm.state == VmState::kSuspended;
  engine::VmSpec spec = spec_for(vm);
  std::optional<PooledVm> pooled = restoring || fork_from ? std::nullopt : take_pooled(spec, vm);
  // Before anything starts: a published port in use fails the start with nothing to undo. A pool clone's
  // monitor runs already: its spare taps join the networks.
  auto attach_networks = [&](const std::vector<std::string>& existing_taps) -> Result<void> {
    if (!config_.networking || (spec.nics.empty() && vm.ports.empty())) return ok();
    NetworkAttachment attachment = KILN_TRY(config_.networking->attach(vm, spec.nics.size(), existing_taps));
    vm.nics = std::move(attachment.nics);
    vm.nic_taps.clear();
    for (size_t i = 0; i < attachment.taps.size() && i < spec.nics.size(); ++i) {
      vm.nic_taps.push_back(attachment.taps[i].name);
      spec.nics[i].tap = std::make_shared<const UniqueFd>(std::move(attachment.taps[i].fd));
    }
    vm.published = std::move(attachment.published);
    return ok();
  };
  if (pooled) {
    if (auto attached = attach_networks(pooled->taps); !attached) {
      WarmPool::discard(std::move(*pooled));
      return attached.error();
    }
  } else {
    KILN_TRY(attach_networks({}));
  }
  if (restoring) {
    spec.restore_from = suspend_dir(vm.id);
  } else {
    vm.started_at = now_rfc3339();
  }
  KILN_TRY(save(vm, VmState::kStarting));
  Result<std::unique_ptr<engine::VmInstance>> launched = Error::internal("not started");
  std::unique_ptr<agent::AgentHub> pooled_hub;
  if (pooled) {
    pooled_hub = std::move(pooled->hub);
    launched = assign_pooled(std::move(*pooled), spec, vm);
    if (!launched) {
      pooled_hub.reset();
      // The clone is gone; the start goes on as if there had been none (new taps, a fork of its own).
      log::warn("could not make a warm pool clone the VM; forking it",
                {{"vm", vm.name}, {"error", launched.error().message()}});
      if (config_.networking) config_.networking->detach(vm);
      vm.nics.clear();
      vm.nic_taps.clear();
      vm.published.clear();
      spec = spec_for(vm);
      if (auto attached = attach_networks({}); !attached) {
        launched = attached.error();
      } else {
        launched = launch_monitor(spec, vm);
      }
    }
  } else {
    launched = launch_monitor(spec, vm, fork_from);
  }
  if (!launched) {
    std::string reason = launched.error().message();
    if (restoring) {
      // The saved state is unusable; keep it for inspection, but the next start boots from the disk.
      reason = fmt::format(
          "could not restore the suspended VM ({}); its saved state was moved to {}.failed and "
          "the next start boots from its disk",
          reason, suspend_dir(vm.id));
      std::error_code ignored;
      fs::remove_all(suspend_dir(vm.id) + ".failed", ignored);
      fs::rename(suspend_dir(vm.id), suspend_dir(vm.id) + ".failed", ignored);
    }
    vm.finished_at = now_rfc3339();
    (void)save(vm, VmState::kError, reason);
    return Error(launched.error().category(), fmt::format("VM {} failed to start: {}", vm.name, reason));
  }
  auto instance = std::move(*launched);
  vm.monitor_pid = instance->monitor_pid();
  slot.running = std::make_unique<RunningVm>();
  slot.running->instance = std::move(instance);
  slot.running->hub = std::move(pooled_hub);  // a pool clone's agent answered when it was forked
  KILN_TRY(store_.update(vm));

  bool forked = vm.start_mode == "fork";
  auto setup_started = std::chrono::steady_clock::now();
  auto connected = [&]() -> Result<void> {
    if (!slot.running->hub) KILN_TRY(connect_agent(slot, vm));
    vm.start_timings.emplace_back("agent", elapsed_ms(setup_started));
    setup_started = std::chrono::steady_clock::now();
    if (forked) {
      KILN_TRY(give_clone_identity(slot, vm));
    } else if (restoring) {
      sync_guest_clock(slot, vm);                   // its clock stopped when it was saved
      KILN_TRY(configure_guest_network(slot, vm));  // its addresses may not be the ones it was saved with
    } else {
      name_guest(slot, vm);
      KILN_TRY(configure_guest_network(slot, vm));
      KILN_TRY(mount_folders(slot, vm));
      KILN_TRY(mount_container_root(slot, vm));
    }
    return ok();
  }();
  if (!connected) {
    engine::VmInstance& instance = *slot.running->instance;
    std::string console = instance.console_tail(1024);
    std::string reason = connected.error().message();
    // A monitor that died while the VM started is the cause; the lost agent channel is only its symptom.
    if (auto exited = instance.wait_for_exit(std::chrono::milliseconds(0)); exited && *exited)
      reason = fmt::format("{} ({})", instance.exit_reason(), reason);
    (void)instance.kill();
    slot.running.reset();
    vm.monitor_pid = 0;
    vm.finished_at = now_rfc3339();
    (void)save(vm, VmState::kError, reason);
    publish(vm, "died", {{"reason", reason}});
    if (!console.empty()) reason += "; console: " + console;
    return Error(connected.error().category(), fmt::format("VM {} failed to start: {}", vm.name, reason));
  }
  vm.start_timings.emplace_back(forked ? "clone-init" : "setup", elapsed_ms(setup_started));
  watch(vm.id, *slot.running->instance);
  if (restoring) {
    std::error_code ignored;
    fs::remove_all(suspend_dir(vm.id), ignored);  // consumed: the guest has moved on from it
  }
  KILN_TRY(save(vm, VmState::kRunning));
  publish(vm, restoring ? "restored" : "started");
  log::info(
      restoring ? "VM restored" : "VM started",
      {{"vm", vm.name}, {"pid", vm.monitor_pid}, {"mode", vm.start_mode}, {"timings", timings_text(vm)}});
  return ok();
}

Result<void> VmManager::force_off(Slot& slot, VmRecord& vm, std::string reason, std::string action) {
  unwatch(vm.id);
  if (slot.running) {
    slot.running->hub.reset();
    KILN_TRY(slot.running->instance->kill());
    slot.running.reset();
  } else if (vm.monitor_pid > 0) {
    // Not adopted (e.g. adoption failed at recovery) but recorded: make sure no monitor is left behind.
    if (auto orphan = engine_.adopt(spec_for(vm), static_cast<pid_t>(vm.monitor_pid)))
      (void)(*orphan)->kill();
  }
  vm.monitor_pid = 0;
  vm.finished_at = now_rfc3339();
  KILN_TRY(save(vm, VmState::kStopped, std::move(reason)));
  publish(vm, std::move(action));
  return ok();
}

Result<void> VmManager::shut_down(Slot& slot, VmRecord& vm, std::chrono::milliseconds grace,
                                  std::string reason) {
  if (!slot.running) return force_off(slot, vm, std::move(reason), "stopped");
  // Read before the state becomes kStopping: a paused guest must run again to hear the shutdown request.
  bool paused = vm.state == VmState::kPaused;
  KILN_TRY(save(vm, VmState::kStopping));
  auto deadline = std::chrono::steady_clock::now() + grace;
  RunningVm& running = *slot.running;
  if (paused) (void)running.instance->resume();
  if (!running.hub) {
    if (auto connected = connect_agent(slot, vm); !connected) {
      log::warn("no agent to stop the VM gracefully",
                {{"vm", vm.name}, {"error", connected.error().message()}});
    }
  }
  if (running.hub && running.hub->alive()) {
    auto asked =
        running.hub->shutdown(false, std::min<std::chrono::milliseconds>(grace, kAgentShutdownTimeout));
    if (!asked)
      log::warn("the agent did not take the shutdown", {{"vm", vm.name}, {"error", asked.error().message()}});
  }
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  auto ended = running.instance->wait_for_exit(std::max(left, std::chrono::milliseconds(0)));
  if (ended && *ended) {
    unwatch(vm.id);
    slot.running.reset();
    vm.monitor_pid = 0;
    vm.finished_at = now_rfc3339();
    KILN_TRY(save(vm, VmState::kStopped, std::move(reason)));
    publish(vm, "stopped");
    return ok();
  }
  log::warn("VM did not stop within its grace period; killing it", {{"vm", vm.name}});
  return force_off(slot, vm, reason.empty() ? "killed after the stop timeout" : reason, "stopped");
}

Result<void> VmManager::discard_suspended(VmRecord& vm) {
  std::error_code ignored;
  fs::remove_all(suspend_dir(vm.id), ignored);
  vm.finished_at = now_rfc3339();
  KILN_TRY(save(vm, VmState::kStopped, "its suspended state was discarded"));
  publish(vm, "stopped");
  return ok();
}

Result<VmRecord> VmManager::start(const std::string& id_or_name, std::string_view as_owner) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "start"));
    switch (vm.state) {
      case VmState::kRunning:
        return ok();  // already what was asked (docker start of a running container is not an error)
      case VmState::kStopped:
      case VmState::kError:
      case VmState::kSuspended:
        return boot(slot, vm);
      default:
        return state_conflict(vm, "start");
    }
  });
}

Result<VmRecord> VmManager::stop(const std::string& id_or_name, std::chrono::milliseconds grace) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    if (vm.state == VmState::kStopped || vm.state == VmState::kError) return ok();
    if (vm.state == VmState::kSuspended) return discard_suspended(vm);
    if (!has_monitor(vm.state)) return state_conflict(vm, "stop");
    return shut_down(slot, vm, grace, "");
  });
}

Result<VmRecord> VmManager::kill(const std::string& id_or_name) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    if (vm.state == VmState::kSuspended) return discard_suspended(vm);
    if (!has_monitor(vm.state)) return state_conflict(vm, "kill");
    return force_off(slot, vm, "killed", "stopped");
  });
}

Result<VmRecord> VmManager::restart(const std::string& id_or_name, std::chrono::milliseconds grace,
                                    std::string_view as_owner) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "restart"));
    if (vm.state == VmState::kCreating) return state_conflict(vm, "restart");
    if (vm.state == VmState::kSuspended) KILN_TRY(discard_suspended(vm));
    if (has_monitor(vm.state)) KILN_TRY(shut_down(slot, vm, grace, ""));
    KILN_TRY(boot(slot, vm));
    publish(vm, "restarted");
    return ok();
  });
}

Result<VmRecord> VmManager::pause(const std::string& id_or_name) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    if (vm.state != VmState::kRunning || !slot.running) return state_conflict(vm, "pause");
    KILN_TRY(slot.running->instance->pause());
    KILN_TRY(save(vm, VmState::kPaused));
    publish(vm, "paused");
    return ok();
  });
}

Result<VmRecord> VmManager::resume(const std::string& id_or_name) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    if (vm.state != VmState::kPaused || !slot.running) return state_conflict(vm, "resume");
    KILN_TRY(slot.running->instance->resume());
    if (!slot.running->hub) {
      // Adopted while paused: the agent could not answer then.
      if (auto connected = connect_agent(slot, vm); !connected) {
        log::warn("resumed VM's agent did not answer",
                  {{"vm", vm.name}, {"error", connected.error().message()}});
      }
    }
    // The guest's clock stood still while it was paused.
    sync_guest_clock(slot, vm);
    KILN_TRY(save(vm, VmState::kRunning));
    publish(vm, "resumed");
    return ok();
  });
}

Result<VmRecord> VmManager::suspend(const std::string& id_or_name, std::string_view as_owner) {
  return locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "suspend"));
    if ((vm.state != VmState::kRunning && vm.state != VmState::kPaused) || !slot.running) {
      return state_conflict(vm, "suspend");
    }
    if (vm.folders_enabled && !vm.folders.empty()) {
      // QEMU blocks migration while a virtio-9p export is mounted in the guest.
      return Error::failed_precondition(fmt::format(
          "cannot suspend VM {}: it has shared folders, whose state cannot be saved (disable them first)",
          vm.name));
    }
    std::string dir = suspend_dir(vm.id);
    std::error_code error;
    fs::remove_all(dir, error);
    fs::create_directories(dir, error);
    if (error) return Error::internal(fmt::format("create {}: {}", dir, error.message()));
    VmState before = vm.state;
    KILN_TRY(save(vm, VmState::kSuspending));
    // The agent session ends with the save either way; closing it first keeps the saved guest quiet.
    slot.running->hub.reset();
    unwatch(vm.id);
    // A VM whose RAM is a shared memfd (every cold-booted VM) is saved as a fork's snapshot is: device state
    // and a sparse memory file, which its restore maps instead of reading in. One whose RAM already is a
    // private mapping of a file (a fork, an instant clone, a VM restored that way) streams it all.
    auto started = std::chrono::steady_clock::now();
    std::string_view kind = "memory-file";
    auto saved = engine_.suspend_running(*slot.running->instance, dir);
    if (!saved && saved.error().category() == ErrorCategory::kUnsupported) {
      log::debug("suspending the VM by streaming its state",
                 {{"vm", vm.name}, {"why", saved.error().message()}});
      kind = "stream";
      saved = slot.running->instance->save_state(dir);
    }
    if (!saved) {
      fs::remove_all(dir, error);
      watch(vm.id, *slot.running->instance);
      if (before == VmState::kRunning) (void)connect_agent(slot, vm);
      KILN_TRY(save(vm, before));
      return Error(saved.error().category(),
                   fmt::format("suspend VM {}: {}", vm.name, saved.error().message()));
    }
    slot.running.reset();
    vm.monitor_pid = 0;
    KILN_TRY(save(vm, VmState::kSuspended));
    publish(vm, "suspended");
    log::info("VM suspended to disk",
              {{"vm", vm.name}, {"dir", dir}, {"kind", kind}, {"ms", elapsed_ms(started)}});
    return ok();
  });
}

Result<agent::ExecHandle> VmManager::exec(const std::string& id_or_name, const agent::ProcessSpec& process,
                                          agent::ExecIo& io) {
  std::optional<agent::ExecHandle> handle;
  auto result = locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    if (vm.state != VmState::kRunning || !slot.running) return state_conflict(vm, "exec in");
    if (!slot.running->hub || !slot.running->hub->alive()) KILN_TRY(connect_agent(slot, vm));
    handle.emplace(KILN_TRY(slot.running->hub->exec(process, std::move(io))));
    return ok();
  });
  if (!result) return result.error();
  return std::move(*handle);
}

Result<agent::ExecHandle> VmManager::reattach(const std::string& id_or_name, agent::ProcessId process,
                                              bool tty, const agent::ReattachRequest& request,
                                              agent::ExecIo& io) {
  std::optional<agent::ExecHandle> handle;
  auto result = locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    if (vm.state != VmState::kRunning || !slot.running) return state_conflict(vm, "take over a process in");
    if (!slot.running->hub || !slot.running->hub->alive()) KILN_TRY(connect_agent(slot, vm));
    handle.emplace(KILN_TRY(slot.running->hub->reattach(process, tty, request, std::move(io))));
    return ok();
  });
  if (!result) return result.error();
  return std::move(*handle);
}

Result<FolderAdded> VmManager::add_folder(const std::string& id_or_name, SharedFolder folder,
                                          std::string_view as_owner) {
  FolderAdded added;
  auto result = locked(id_or_name, [&](Slot&, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "add a shared folder to"));
    KILN_TRY(normalize_shared_folder(folder));
    if (vm.folders.size() >= kMaxSharedFolders)
      return Error::invalid_argument(fmt::format(
          "VM {} already shares {} folders, the most a VM can (QEMU's microvm has 8 device slots)", vm.name,
          kMaxSharedFolders));
    for (const auto& existing : vm.folders) {
      if (existing.guest_path == folder.guest_path) {
        return Error::already_exists(
            fmt::format("VM {} already shares a folder at {}", vm.name, folder.guest_path));
      }
    }
    if (folder.id.empty()) {
      // Kiln API folders are numbered; AppCatalyst's are named by the client (its guestPath).
      int next = 0;
      for (const auto& existing : vm.folders) {
        // A client-named id made of digits ("99999999999") must not throw: parse, bounded.
        if (auto number = parse_unsigned<uint32_t>(existing.id, "folder id", 0, INT32_MAX - 1))
          next = std::max(next, static_cast<int>(*number) + 1);
      }
      folder.id = std::to_string(next);
    }
    for (const auto& existing : vm.folders) {
      if (existing.id == folder.id) {
        return Error::already_exists(fmt::format("VM {} already has a shared folder {}", vm.name, folder.id));
      }
    }
    vm.folders.push_back(folder);
    KILN_TRY(store_.update(vm));
    added.folder = folder;
    if (has_monitor(vm.state)) {
      added.note =
          "the folder appears in the guest at the VM's next start (QEMU microvm cannot add devices to a "
          "running VM)";
    } else {
      added.note = "the folder appears in the guest when the VM starts";
    }
    return ok();
  });
  if (!result) return result.error();
  return added;
}

Result<void> VmManager::remove_folder(const std::string& id_or_name, const std::string& folder_id,
                                      std::string_view as_owner) {
  auto result = locked(id_or_name, [&](Slot&, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "remove a shared folder from"));
    auto found = std::find_if(vm.folders.begin(), vm.folders.end(),
                              [&](const SharedFolder& folder) { return folder.id == folder_id; });
    if (found == vm.folders.end()) {
      return Error::not_found(fmt::format("VM {} has no shared folder {}", vm.name, folder_id));
    }
    vm.folders.erase(found);
    return store_.update(vm);
  });
  if (!result) return result.error();
  return ok();
}

Result<VmRecord> VmManager::set_folders_enabled(const std::string& id_or_name, bool enabled,
                                                std::string_view as_owner) {
  return locked(id_or_name, [&](Slot&, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "change the shared folders of"));
    vm.folders_enabled = enabled;
    return store_.update(vm);
  });
}

}  // namespace kiln::daemon

#include "daemon/vm_manager.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <regex>

#include "common/log.h"
#include "common/random_id.h"
#include "daemon/root_disk.h"
#include "daemon/vm_slot.h"
#include "image/image_store.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMinMemoryMib = 64;
constexpr uint64_t kMinDiskMib = 32;
constexpr uint64_t kMaxDiskMib = uint64_t{16} << 20;  // 16 TiB: the disk is sparse
constexpr unsigned kDefaultCpus = 1;
constexpr uint64_t kDefaultMemoryMib = 512;
constexpr uint64_t kDefaultDiskMib = 1024;
// A container's writable layer: sparse, so its size is only a ceiling on what the container may write.
constexpr uint64_t kDefaultContainerLayerMib = 10 * 1024;

bool valid_name(const std::string& name) {
  static const std::regex pattern("[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}");
  return std::regex_match(name, pattern);
}

}  // namespace

Result<void> check_owner(const VmRecord& vm, std::string_view as_owner, std::string_view operation) {
  if (vm.owner.empty() || vm.owner == as_owner) return ok();
  auto name = vm.labels.find(std::string(kContainerNameLabel));
  return Error::failed_precondition(fmt::format(
      "cannot {} VM {}: it runs Docker container {} ({}); use the Docker API (docker {} ...) instead",
      operation, vm.name, name == vm.labels.end() ? vm.owner.substr(0, 12) : name->second,
      vm.owner.substr(0, 12), operation == "remove" ? "rm" : "start/stop/update"));
}

Result<void> normalize_shared_folder(SharedFolder& folder) {
  std::error_code error;
  if (folder.host_path.empty() || folder.host_path.front() != '/' ||
      !fs::is_directory(folder.host_path, error)) {
    return Error::invalid_argument(
        fmt::format("host path {} is not an existing directory", folder.host_path));
  }
  if (folder.guest_path.empty()) return Error::invalid_argument("a shared folder needs a guest path");
  if (folder.guest_path.front() != '/') {
    if (folder.guest_path.find('/') != std::string::npos || folder.guest_path == "." ||
        folder.guest_path == "..") {
      return Error::invalid_argument(fmt::format(
          "guest path {} must be absolute or a bare name (mounted under /mnt/hgfs)", folder.guest_path));
    }
    folder.guest_path = "/mnt/hgfs/" + folder.guest_path;
  }
  if (folder.guest_path == "/" || folder.guest_path.find("/../") != std::string::npos ||
      folder.guest_path.ends_with("/..")) {
    return Error::invalid_argument(fmt::format("guest path {} cannot be shared over", folder.guest_path));
  }
  return ok();
}

VmManager::VmManager(VmManagerConfig config, VmStore& store, EventBus& events, engine::Engine& engine)
    : config_(std::move(config)), store_(store), events_(events), engine_(engine) {}

Result<std::unique_ptr<VmManager>> VmManager::create(VmManagerConfig config, VmStore& store, EventBus& events,
                                                     engine::Engine& engine) {
  std::unique_ptr<VmManager> manager(new VmManager(std::move(config), store, events, engine));  // NOLINT
  manager->watcher_wakeup_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!manager->watcher_wakeup_) return Error::last_os_error("eventfd");
  std::error_code error;
  fs::create_directories(manager->config_.root + "/vms", error);
  if (error) return Error::internal(fmt::format("create {}/vms: {}", manager->config_.root, error.message()));
  fs::create_directories(manager->config_.run_dir + "/vms", error);
  if (error)
    return Error::internal(fmt::format("create {}/vms: {}", manager->config_.run_dir, error.message()));
  manager->watcher_ = std::thread([raw = manager.get()] { raw->watch_monitors(); });
  return manager;
}

VmManager::~VmManager() {
  shutdown();
}

void VmManager::shutdown() {
  {
    std::lock_guard guard(watch_mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_watcher();
  if (watcher_.joinable()) watcher_.join();
  std::lock_guard guard(slots_mutex_);
  for (auto& [id, slot] : slots_) {
    std::lock_guard slot_guard(slot->lock);
    if (slot->running) {
      slot->running->hub.reset();  // closes the agent channel; the agent keeps the VM running
      slot->running->instance->release();
      slot->running.reset();
    }
  }
}

std::string VmManager::vm_dir(const std::string& id) const {
  return config_.root + "/vms/" + id;
}

// Short: unix socket paths are limited to 108 bytes.
std::string VmManager::runtime_dir(const std::string& id) const {
  return config_.run_dir + "/vms/" + id.substr(0, 16);
}

std::shared_ptr<VmManager::Slot> VmManager::slot_for(const std::string& id) {
  std::lock_guard guard(slots_mutex_);
  auto& slot = slots_[id];
  if (!slot) slot = std::make_shared<Slot>();
  return slot;
}

Result<void> VmManager::save(VmRecord& vm, VmState state, std::string reason) {
  // Every way a VM's monitor ends (stop, kill, exit, suspend, a failed start) comes through here: its
  // addresses, names and published ports go back to its networks with it.
  if (!has_monitor(state) && (!vm.nics.empty() || !vm.published.empty() || !vm.nic_taps.empty())) {
    if (config_.networking) config_.networking->detach(vm);
    vm.nics.clear();
    vm.nic_taps.clear();  // the taps went with the monitor
    vm.published.clear();
  }
  vm.state = state;
  vm.state_reason = std::move(reason);
  return store_.update(vm);
}

void VmManager::publish(const VmRecord& vm, std::string action, Json attributes) {
  attributes["name"] = vm.name;
  for (const auto& [key, value] : vm.labels) attributes[key] = value;
  events_.publish(
      {.type = "vm", .action = std::move(action), .id = vm.id, .name = vm.name, .attributes = attributes});
}

Result<void> VmManager::validate_resources(unsigned cpus, uint64_t memory_mib) const {
  if (cpus == 0) return Error::invalid_argument("cpus must be at least 1");
  if (cpus > config_.host_cpus) {
    return Error::invalid_argument(
        fmt::format("cpus {} exceeds the host's {} CPUs", cpus, config_.host_cpus));
  }
  if (memory_mib < kMinMemoryMib) {
    return Error::invalid_argument(
        fmt::format("memory {} MiB is below the minimum of {} MiB", memory_mib, kMinMemoryMib));
  }
  if (config_.host_memory_mib > 0 && memory_mib > config_.host_memory_mib) {
    return Error::invalid_argument(
        fmt::format("memory {} MiB exceeds the host's {} MiB", memory_mib, config_.host_memory_mib));
  }
  return ok();
}

Result<void> VmManager::validate(const CreateVmRequest& request) const {
  if (!request.name.empty() && !valid_name(request.name)) {
    return Error::invalid_argument(fmt::format(
        "invalid VM name \"{}\": names must match [a-zA-Z0-9][a-zA-Z0-9_.-]{{0,62}}", request.name));
  }
  KILN_TRY(validate_resources(request.cpus.value_or(kDefaultCpus),
                              request.memory_mib.value_or(kDefaultMemoryMib)));
  uint64_t disk = request.disk_mib.value_or(kDefaultDiskMib);
  if (disk < kMinDiskMib || disk > kMaxDiskMib) {
    return Error::invalid_argument(
        fmt::format("disk size {} MiB is outside {} MiB to 16 TiB", disk, kMinDiskMib));
  }
  if (!request.kernel.empty()) {
    struct stat st {};
    if (request.kernel.front() != '/' || ::stat(request.kernel.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Error::invalid_argument(
          fmt::format("kernel {} is not an existing file (an absolute path)", request.kernel));
    }
  }
  switch (request.source.kind) {
    case RootSource::Kind::kDirectory:
    case RootSource::Kind::kTarball:
      if (request.source.value.empty() || request.source.value.front() != '/') {
        return Error::invalid_argument(
            fmt::format("root filesystem {} must be an absolute path on the host", request.source.value));
      }
      break;
    case RootSource::Kind::kImage:
    case RootSource::Kind::kVm:
      if (request.source.value.empty()) return Error::invalid_argument("an empty root filesystem source");
      break;
    case RootSource::Kind::kContainer:
      if (request.source.value.empty() || request.owner.empty())
        return Error::invalid_argument("a container's VM needs its image and its container");
      if (!config_.images) return Error::unsupported("images are not available in this kilnd");
      if (!request.folders.empty()) return Error::invalid_argument("a container's VM has no shared folders");
      for (const auto& mount : request.container_mounts) {
        if (mount.destination.empty() || mount.destination.front() != '/')
          return Error::invalid_argument(
              fmt::format("a container mount at {:?} is not absolute", mount.destination));
        if (mount.kind == ContainerMount::Kind::kHostPath &&
            (mount.host_path.empty() || mount.host_path.front() != '/'))
          return Error::invalid_argument(
              fmt::format("a container mount of {:?} is not absolute", mount.host_path));
      }
      break;
    case RootSource::Kind::kDefault:
      break;
  }
  if (!request.owner.empty() && request.source.kind != RootSource::Kind::kContainer)
    return Error::invalid_argument("only a container's VM has an owner");
  if (!request.container_mounts.empty() && request.source.kind != RootSource::Kind::kContainer)
    return Error::invalid_argument("only a container's VM has container mounts");
  for (const auto& [key, value] : request.labels) {
    if (key.empty()) return Error::invalid_argument("a label needs a key");
  }
  return ok();
}

Result<VmRecord> VmManager::create_vm(CreateVmRequest request) {
  return create_record(std::move(request), nullptr);
}

Result<VmRecord> VmManager::create_record(CreateVmRequest request,
                                          const std::function<Result<void>(const VmRecord&)>& build_root) {
  KILN_TRY(validate(request));
  VmRecord vm;
  vm.id = KILN_TRY(random_hex_id());
  vm.name = request.name.empty() ? "vm-" + vm.id.substr(0, 12) : request.name;
  vm.cpus = request.cpus.value_or(kDefaultCpus);
  vm.memory_mib = request.memory_mib.value_or(kDefaultMemoryMib);
  bool container = request.source.kind == RootSource::Kind::kContainer;
  vm.disk_mib = request.disk_mib.value_or(container ? kDefaultContainerLayerMib : kDefaultDiskMib);
  vm.owner = request.owner;
  vm.container_mounts = request.container_mounts;
  if (request.networks) {
    vm.networks = *request.networks;
  } else if (config_.networking && !container) {
    vm.networks = {{.network = std::string(kDefaultNetwork)}};
  }
  vm.ports = request.ports;
  for (const auto& port : vm.ports) {
    if (port.guest_port == 0)
      return Error::invalid_argument("a published port needs the guest port it forwards to");
    if (port.protocol != "tcp" && port.protocol != "udp")
      return Error::invalid_argument(fmt::format("unsupported protocol {:?}: tcp or udp", port.protocol));
  }
  if (!vm.ports.empty() && vm.networks.empty())
    return Error::invalid_argument("a VM without a network cannot publish ports");
  vm.source = request.source;
  vm.kernel = request.kernel;
  vm.labels = request.labels;
  vm.tag = request.tag;
  vm.state = VmState::kCreating;
  vm.created_at = now_rfc3339();
  if (request.folders.size() > kMaxSharedFolders)
    return Error::invalid_argument(fmt::format(
        "a VM can share at most {} folders (QEMU's microvm has 8 device slots)", kMaxSharedFolders));
  for (auto& folder : request.folders) {
    KILN_TRY(normalize_shared_folder(folder));
    for (const auto& existing : vm.folders) {
      if (existing.guest_path == folder.guest_path) {
        return Error::invalid_argument(fmt::format("two shared folders at {}", folder.guest_path));
      }
    }
    folder.id = std::to_string(vm.folders.size());
    vm.folders.push_back(folder);
  }
  // The name is claimed first, atomically: of concurrent creates of one name exactly one gets here.
  KILN_TRY(store_.insert(vm));
  auto slot = slot_for(vm.id);
  std::lock_guard guard(slot->lock);

  auto built = [&]() -> Result<void> {
    if (container) return build_container_disks(vm);
    if (build_root) return build_root(vm);
    std::string dir = vm_dir(vm.id);
    std::string scratch = dir + "/scratch";
    std::error_code error;
    fs::create_directories(scratch, error);
    if (error) return Error::internal(fmt::format("create {}: {}", scratch, error.message()));
    RootDiskInputs inputs{.scratch_dir = scratch, .busybox_binary = config_.busybox_binary};
    if (config_.images) {
      inputs.image_rootfs = [this](const std::string& reference) -> Result<std::string> {
        image::NullProgress progress;
        auto path = config_.images->rootfs_image(reference, progress);
        if (!path && path.error().category() == ErrorCategory::kNotFound) {
          return Error::invalid_argument(fmt::format("no such image: {} (pull it first)", reference));
        }
        return path;
      };
    }
    inputs.vm_root_disk = [this, &vm](const std::string& name) -> Result<std::string> {
      auto source = store_.resolve(name);
      if (!source) {
        return Error::invalid_argument(fmt::format("template VM {}: {}", name, source.error().message()));
      }
      if (source->id == vm.id) return Error::invalid_argument("a VM cannot be cloned from itself");
      if (has_monitor(source->state)) {
        return Error::failed_precondition(
            fmt::format("template VM {} is {}: stop it before cloning", name, to_string(source->state)));
      }
      return vm_dir(source->id) + "/root.ext4";
    };
    auto result = build_root_disk(dir + "/root.ext4", vm.disk_mib, vm.source, inputs);
    fs::remove_all(scratch, error);
    return result;
  }();
  if (!built) {
    std::error_code error;
    fs::remove_all(vm_dir(vm.id), error);
    (void)store_.remove(vm.id);
    return built.error();
  }
  KILN_TRY(save(vm, VmState::kStopped));
  publish(vm, "created");
  log::info("VM created", {{"vm", vm.name}, {"id", vm.id}});
  return vm;
}

Result<void> VmManager::build_container_disks(VmRecord& vm) {
  std::string dir = vm_dir(vm.id);
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) return Error::internal(fmt::format("create {}: {}", dir, error.message()));
  // Built when the image was pulled or loaded; only an image from an older store builds it here.
  image::NullProgress progress;
  vm.image_rootfs = KILN_TRY(config_.images->rootfs_image(vm.source.value, progress));
  return image::ImageStore::create_writable_layer(container_layer_path(vm.id), vm.disk_mib << 20,
                                                  {std::string(kLayerUpperDir), std::string(kLayerWorkDir)});
}

Result<std::vector<VmRecord>> VmManager::list(const VmFilter& filter) {
  auto all = KILN_TRY(store_.list());
  std::vector<VmRecord> matching;
  for (auto& vm : all) {
    if (vm.state == VmState::kCreating) continue;
    if (filter.state && vm.state != *filter.state) continue;
    if (!filter.name.empty() && vm.name.find(filter.name) == std::string::npos) continue;
    bool labels_match = true;
    for (const auto& [key, value] : filter.labels) {
      auto found = vm.labels.find(key);
      if (found == vm.labels.end() || found->second != value) labels_match = false;
    }
    for (const auto& key : filter.label_keys) {
      if (!vm.labels.contains(key)) labels_match = false;
    }
    if (labels_match) matching.push_back(std::move(vm));
  }
  return matching;
}

Result<VmRecord> VmManager::inspect(const std::string& id_or_name) {
  return store_.resolve(id_or_name);
}

Result<VmRecord> VmManager::locked(const std::string& id_or_name,
                                   const std::function<Result<void>(Slot&, VmRecord&)>& operation) {
  VmRecord found = KILN_TRY(store_.resolve(id_or_name));
  auto slot = slot_for(found.id);
  std::lock_guard guard(slot->lock);
  // Re-read under the lock: the previous holder may have changed or deleted it.
  auto current = KILN_TRY(store_.get(found.id));
  if (!current) return Error::not_found(fmt::format("no such VM: {}", id_or_name));
  VmRecord vm = std::move(*current);
  if (vm.state == VmState::kCreating) {
    return Error::failed_precondition(fmt::format("VM {} is still being created", vm.name));
  }
  KILN_TRY(operation(*slot, vm));
  return vm;
}

Result<VmRecord> VmManager::update(const std::string& id_or_name, const UpdateVmRequest& request,
                                   std::string_view as_owner) {
  return locked(id_or_name, [&](Slot&, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "update"));
    if ((request.cpus || request.memory_mib) && vm.state != VmState::kStopped &&
        vm.state != VmState::kError) {
      return Error::failed_precondition(fmt::format(
          "cannot change cpus or memory of VM {}: it is {} (stop it first)", vm.name, to_string(vm.state)));
    }
    KILN_TRY(validate_resources(request.cpus.value_or(vm.cpus), request.memory_mib.value_or(vm.memory_mib)));
    if (request.labels) {
      for (const auto& [key, value] : *request.labels) {
        if (key.empty()) return Error::invalid_argument("a label needs a key");
      }
      vm.labels = *request.labels;
    }
    if (request.cpus) vm.cpus = *request.cpus;
    if (request.memory_mib) vm.memory_mib = *request.memory_mib;
    KILN_TRY(store_.update(vm));
    publish(vm, "updated");
    return ok();
  });
}

Result<void> VmManager::remove(const std::string& id_or_name, bool force, std::string_view as_owner) {
  std::string removed_id;
  auto result = locked(id_or_name, [&](Slot& slot, VmRecord& vm) -> Result<void> {
    KILN_TRY(check_owner(vm, as_owner, "remove"));
    if (has_monitor(vm.state)) {
      if (!force) {
        return Error::failed_precondition(
            fmt::format("cannot remove VM {}: it is {} (stop it first or force the removal)", vm.name,
                        to_string(vm.state)));
      }
      KILN_TRY(force_off(slot, vm, "removed", "killed"));
    }
    std::error_code error;
    fs::remove_all(vm_dir(vm.id), error);
    if (error) return Error::internal(fmt::format("remove {}: {}", vm_dir(vm.id), error.message()));
    fs::remove_all(runtime_dir(vm.id), error);
    KILN_TRY(store_.remove(vm.id));
    publish(vm, "deleted");
    removed_id = vm.id;
    return ok();
  });
  if (!result) return result.error();
  std::lock_guard guard(slots_mutex_);
  slots_.erase(removed_id);
  return ok();
}

Result<std::string> VmManager::console_log_path(const std::string& id_or_name) {
  VmRecord vm = KILN_TRY(store_.resolve(id_or_name));
  return runtime_dir(vm.id) + "/console.log";
}

}  // namespace kiln::daemon

// ContainerManager: records and their VMs (create, inspect, list, rename, remove, recovery at kilnd start).
// The lifecycle of the main process is in container_lifecycle.cc, attach in container_attach.cc, exec in
// container_exec.cc.
#include "daemon/containers/container_manager.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>

#include <filesystem>

#include "agent/protocol/linux_capabilities.h"
#include "common/clean_path.h"
#include "common/log.h"
#include "common/random_id.h"
#include "common/rfc3339.h"
#include "daemon/containers/container_names.h"
#include "daemon/containers/container_runtime.h"
#include "daemon/networks/container_networking.h"
#include "image/image_store.h"

namespace kiln::daemon::containers {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr uint64_t kMinVmMemoryMib = 64;

std::string env_key(std::string_view entry) {
  return std::string(entry.substr(0, entry.find('=')));
}

// Docker's merge of environments: later entries replace earlier ones of the same key, in place.
void merge_env(std::vector<std::string>& into, const std::vector<std::string>& from) {
  for (const auto& entry : from) {
    std::string key = env_key(entry);
    auto same = std::find_if(into.begin(), into.end(),
                             [&](const std::string& existing) { return env_key(existing) == key; });
    if (same != into.end()) {
      *same = entry;
    } else {
      into.push_back(entry);
    }
  }
}

std::vector<std::string> string_list(const Json& json) {
  std::vector<std::string> out;
  if (json.is_array()) {
    for (const auto& item : json) {
      if (item.is_string()) out.push_back(item.get<std::string>());
    }
  }
  return out;
}

// A container's VM is named after the container when that makes a valid, free VM name.
bool usable_vm_name(const std::string& name) {
  return !name.empty() && name.size() <= 63;
}

}  // namespace

std::vector<std::string> process_environment(const ContainerRecord& container) {
  // dockerd's CreateDaemonEnvironment: PATH, HOSTNAME (and TERM with a tty), then Config.Env over them.
  std::vector<std::string> env = {std::string(kDefaultPath), "HOSTNAME=" + container.config.hostname};
  if (container.config.tty) env.emplace_back("TERM=xterm");
  env.insert(env.end(), container.link_env.begin(), container.link_env.end());
  merge_env(env, container.config.env);
  return env;
}

namespace {

// What the container's VM mounts for it: host paths (binds, volumes' directories) and tmpfs.
std::vector<ContainerMount> vm_mounts(const std::vector<MountPoint>& mounts) {
  std::vector<ContainerMount> out;
  for (const auto& mount : mounts) {
    if (mount.type == MountPoint::Type::kTmpfs) {
      out.push_back({.kind = ContainerMount::Kind::kTmpfs,
                     .destination = mount.destination,
                     .read_only = mount.read_only,
                     .options = mount.tmpfs_options});
    } else {
      out.push_back({.kind = ContainerMount::Kind::kHostPath,
                     .host_path = mount.source,
                     .destination = mount.destination,
                     .read_only = mount.read_only,
                     .copy_up = mount.type == MountPoint::Type::kVolume && mount.copy_up});
    }
  }
  return out;
}

// A VM's share carries directories and regular files; a socket or a device node on the host cannot reach
// a guest kernel (`-v /var/run/docker.sock:...` works under dockerd, where the container shares the host's
// kernel). Refused at create, naming it, rather than at the first start.
Result<void> check_bind_sources(const std::vector<MountPoint>& mounts) {
  for (const auto& mount : mounts) {
    if (mount.type != MountPoint::Type::kBind) continue;
    std::error_code error;
    auto status = fs::status(mount.source, error);
    if (error || !fs::exists(status)) continue;  // -v makes a missing one at start; --mount checked it exists
    if (!fs::is_directory(status) && !fs::is_regular_file(status))
      return Error::invalid_argument(fmt::format(
          "cannot bind-mount {} into a Kiln container: it is a {}, and a container's VM can share only "
          "directories and regular files with the host",
          mount.source, fs::is_socket(status) ? "socket" : "special file"));
  }
  return ok();
}

}  // namespace

ContainerManager::ContainerManager(ContainerManagerConfig config, store::Database& db, VmManager& vms,
                                   image::ImageStore& images, volumes::VolumeManager& volumes,
                                   EventBus& events)
    : config_(std::move(config)),
      store_(db),
      vms_(vms),
      images_(images),
      volumes_(volumes),
      events_(events),
      random_(std::random_device{}()) {
  volumes_.set_users([this] { return volume_users(); });
}

Result<std::unique_ptr<ContainerManager>> ContainerManager::create(ContainerManagerConfig config,
                                                                   store::Database& db, VmManager& vms,
                                                                   image::ImageStore& images,
                                                                   volumes::VolumeManager& volumes,
                                                                   EventBus& events) {
  std::error_code error;
  fs::create_directories(config.root + "/containers", error);
  if (error) return Error::internal(fmt::format("create {}/containers: {}", config.root, error.message()));
  return std::unique_ptr<ContainerManager>(  // NOLINT: private constructor
      new ContainerManager(std::move(config), db, vms, images, volumes, events));
}

ContainerManager::~ContainerManager() {
  volumes_.set_users(nullptr);
  shutdown();
  join();
}

volumes::VolumeUsers ContainerManager::volume_users() {
  volumes::VolumeUsers users;
  auto all = store_.list();
  if (!all) {
    log::warn("could not list containers for their volumes", {{"error", all.error().message()}});
    return users;
  }
  for (const auto& container : *all) {
    for (const auto& mount : container.host_config.mounts) {
      if (mount.type == MountPoint::Type::kVolume && !mount.name.empty())
        users[mount.name].push_back(container.id);
    }
  }
  return users;
}

Result<void> ContainerManager::attach_volumes(ContainerRecord& container, std::vector<std::string>& made) {
  bool changed = false;
  for (auto& mount : container.host_config.mounts) {
    if (mount.type != MountPoint::Type::kVolume) continue;
    if (mount.anonymous && mount.name.empty()) mount.name = KILN_TRY(random_hex_id());
    bool existed = static_cast<bool>(volumes_.get(mount.name));
    // Recorded before the volume exists, so it has a user the moment it does.
    mount.source = volumes_.data_path(mount.name);
    KILN_TRY(save(container));
    // Labels apply to a volume this creates; an existing one keeps its own, as with dockerd.
    auto volume = volumes_.create({.name = mount.name,
                                   .labels = mount.volume_labels,
                                   .anonymous = mount.anonymous,
                                   .labels_given = !mount.volume_labels.empty()});
    if (!volume) return volume.error();
    if (!existed) made.push_back(mount.name);
    changed = true;
  }
  if (changed) KILN_TRY(save(container));
  return ok();
}

std::string ContainerManager::log_path(const std::string& id) const {
  return fmt::format("{}/containers/{}/{}-json.log", config_.root, id, id);
}

std::shared_ptr<ContainerManager::Runtime> ContainerManager::runtime(const std::string& id) {
  std::lock_guard guard(runtimes_mutex_);
  auto& slot = runtimes_[id];
  if (!slot) slot = std::make_shared<Runtime>();
  return slot;
}

Result<ContainerRecord> ContainerManager::load(Runtime&, const std::string& id) {
  auto found = KILN_TRY(store_.get(id));
  if (!found) return Error::not_found(fmt::format("No such container: {}", id));
  return std::move(*found);
}

Result<void> ContainerManager::save(ContainerRecord& container) {
  return store_.update(container);
}

void ContainerManager::publish(const ContainerRecord& container, std::string action, Json attributes) {
  // Docker's Actor.Attributes: the labels, then image and name (which win over labels of those names).
  Json all = Json::object();
  for (const auto& [key, value] : container.config.labels) all[key] = value;
  all["image"] = container.config.image;
  all["name"] = container.name;
  for (const auto& [key, value] : attributes.items()) all[key] = value;
  events_.publish({.type = "container",
                   .action = std::move(action),
                   .id = container.id,
                   .name = container.name,
                   .attributes = std::move(all)});
}

Result<void> ContainerManager::merge_image_config(NewContainer& request, const std::string& image_id,
                                                  const Json& image_config) {
  ContainerConfig& config = request.config;
  config.image_id = image_id;
  const Json empty = Json::object();
  const Json& image = image_config.is_object() ? image_config : empty;
  // As dockerd's merge (daemon/commit.go merge): the client's entries, then the image's it did not set.
  for (const auto& entry : string_list(image.value("Env", Json::array()))) {
    std::string key = env_key(entry);
    bool set = std::any_of(config.env.begin(), config.env.end(),
                           [&](const std::string& existing) { return env_key(existing) == key; });
    if (!set) config.env.push_back(entry);
  }
  if (!request.entrypoint_given || config.entrypoint.empty()) {
    // An empty --entrypoint "" clears the image's; no entrypoint at all keeps it.
    if (!request.entrypoint_given) config.entrypoint = string_list(image.value("Entrypoint", Json::array()));
    if (!request.cmd_given || config.cmd.empty()) {
      if (!request.entrypoint_given && config.cmd.empty())
        config.cmd = string_list(image.value("Cmd", Json::array()));
    }
  }
  if (config.working_dir.empty()) config.working_dir = image.value("WorkingDir", "");
  if (config.user.empty()) config.user = image.value("User", "");
  if (config.stop_signal.empty()) config.stop_signal = image.value("StopSignal", "");
  if (config.stop_signal.empty()) config.stop_signal = "SIGTERM";
  if (auto labels = image.find("Labels"); labels != image.end() && labels->is_object()) {
    for (const auto& [key, value] : labels->items()) {
      if (value.is_string() && !config.labels.contains(key)) config.labels[key] = value.get<std::string>();
    }
  }
  // The image's VOLUMEs: an anonymous volume at each path no mount of the client's covers (dockerd merges
  // Config.Volumes the same way).
  if (auto volumes = image.find("Volumes"); volumes != image.end() && volumes->is_object()) {
    auto& raw = request.raw_config["Volumes"];
    if (!raw.is_object()) raw = Json::object();
    for (const auto& [path, value] : volumes->items()) {
      raw[path] = value;
      std::string destination = clean_absolute_path(path);
      bool covered = std::any_of(request.host_config.mounts.begin(), request.host_config.mounts.end(),
                                 [&](const MountPoint& mount) { return mount.destination == destination; });
      if (!covered && destination != "/")
        request.host_config.mounts.push_back({.type = MountPoint::Type::kVolume,
                                              .destination = destination,
                                              .copy_up = true,
                                              .anonymous = true});
    }
  }
  // Fields Kiln only records (ExposedPorts, Healthcheck) come from the image when the client gave none.
  for (const char* key : {"ExposedPorts", "Healthcheck", "OnBuild"}) {
    if (auto found = image.find(key); found != image.end() && !found->is_null()) {
      auto& raw = request.raw_config[key];
      if (raw.is_null()) raw = *found;
    }
  }
  if (config.entrypoint.empty() && config.cmd.empty()) return Error::invalid_argument("No command specified");
  return ok();
}

Result<void> ContainerManager::resolve_links(HostConfig& host_config) {
  // As dockerd's registerLinks: on a user-defined network links are left as they are (not checked, not used).
  if (host_config.network_mode != "default" && host_config.network_mode != kDefaultNetwork) return ok();
  for (ContainerLink& link : host_config.links) {
    auto child = store_.resolve(link.container);
    if (!child) {
      // dockerd answers 400, not 404: a 404 would make the docker CLI look for a missing image.
      return Error::invalid_argument(
          fmt::format("could not get container for {}: {}", link.container, child.error().message()));
    }
    link.container = child->id;
    link.name = child->name;
  }
  return ok();
}

Result<ContainerRecord> ContainerManager::create(NewContainer request) {
  if (!request.name.empty()) request.name = KILN_TRY(validate_container_name(request.name));
  auto details = images_.inspect(request.config.image);
  if (!details) {
    if (details.error().category() == ErrorCategory::kNotFound) {
      std::string shown = request.config.image;
      if (auto ref = image::ImageRef::parse(shown); ref && shown.find("sha256:") == std::string::npos)
        shown = ref->familiar();
      return Error::not_found(fmt::format("No such image: {}", shown));
    }
    return details.error();
  }
  KILN_TRY(merge_image_config(request, details->summary.record.id.to_string(),
                              details->config.raw.value("config", Json::object())));
  (void)KILN_TRY(agent::container_capabilities(request.host_config.cap_add, request.host_config.cap_drop));
  KILN_TRY(validate_json_file_options(request.host_config.log_config.options));
  KILN_TRY(check_bind_sources(request.host_config.mounts));
  KILN_TRY(resolve_links(request.host_config));

  ContainerRecord container;
  container.id = KILN_TRY(random_hex_id());
  container.created = now_rfc3339(TimePrecision::kNanos);
  container.config = std::move(request.config);
  container.host_config = std::move(request.host_config);
  container.raw_config = std::move(request.raw_config);
  container.raw_host_config = std::move(request.raw_host_config);
  container.raw_networking_config = std::move(request.raw_networking_config);
  container.networks = std::move(request.networks);
  container.ports = std::move(request.ports);
  if (container.config.hostname.empty()) container.config.hostname = container.id.substr(0, 12);

  {
    // A generated name is picked and claimed in one step, so two creates never pick the same one.
    std::lock_guard guard(names_mutex_);
    if (request.name.empty()) {
      request.name = KILN_TRY(unique_container_name(
          random_, [this](const std::string& name) { return static_cast<bool>(store_.resolve(name)); }));
    }
    container.name = request.name;
    KILN_TRY(store_.insert(container));
  }

  std::vector<std::string> volumes_made;  // by this create: removed again if it fails
  auto vm_made = [&]() -> Result<void> {
    // After the record is in: from here on the volumes have a user, so no `docker volume rm` takes them.
    KILN_TRY(attach_volumes(container, volumes_made));
    CreateVmRequest vm{.source = {.kind = RootSource::Kind::kContainer, .value = container.config.image_id},
                       .labels = {{std::string(kContainerIdLabel), container.id},
                                  {std::string(kContainerNameLabel), container.name},
                                  {std::string(kContainerImageLabel), container.config.image}},
                       .owner = container.id,
                       .container_mounts = vm_mounts(container.host_config.mounts)};
    // `docker run --label kiln.boot=cold`: this container's VM boots instead of forking from a template.
    if (auto boot = container.config.labels.find(std::string(kBootLabel));
        boot != container.config.labels.end())
      vm.labels[std::string(kBootLabel)] = boot->second;
    uint64_t memory_mib =
        container.host_config.memory_bytes == 0
            ? config_.default_memory_mib
            : std::max(kMinVmMemoryMib, (container.host_config.memory_bytes + (1 << 20) - 1) >> 20);
    vm.memory_mib = memory_mib;
    unsigned cpus = config_.default_cpus;
    if (container.host_config.nano_cpus > 0)
      cpus = static_cast<unsigned>((container.host_config.nano_cpus + 999'999'999) / 1'000'000'000);
    else if (container.host_config.cpu_count > 0)
      cpus = container.host_config.cpu_count;
    vm.cpus = cpus;
    vm.name = usable_vm_name(container.name) ? container.name : "ctr-" + container.id.substr(0, 12);
    auto made = vms_.create_vm(vm);
    if (!made && made.error().category() == ErrorCategory::kAlreadyExists) {
      vm.name = "ctr-" + container.id.substr(0, 12);  // a VM of that name exists
      made = vms_.create_vm(vm);
    }
    if (!made) return made.error();
    container.vm_id = made->id;
    std::error_code error;
    fs::create_directories(fs::path(log_path(container.id)).parent_path(), error);
    if (error) return Error::internal(fmt::format("create the container's directory: {}", error.message()));
    return save(container);
  }();
  if (!vm_made) {
    // Nothing half-made is left: no record, no VM, no directory.
    if (!container.vm_id.empty()) (void)vms_.remove(container.vm_id, true, container.id);
    std::error_code ignored;
    fs::remove_all(fs::path(log_path(container.id)).parent_path(), ignored);
    (void)store_.remove(container.id);
    for (const auto& name : volumes_made) (void)volumes_.remove(name, true);
    return vm_made.error();
  }
  publish(container, "create");
  log::info("container created",
            {{"container", container.name}, {"id", container.id}, {"vm", container.vm_id}});
  return container;
}

Result<ContainerRecord> ContainerManager::inspect(const std::string& reference) {
  return store_.resolve(reference);
}

Result<std::vector<ContainerRecord>> ContainerManager::list() {
  return store_.list();
}

Result<void> ContainerManager::rename(const std::string& reference, const std::string& new_name) {
  std::string name = KILN_TRY(validate_container_name(new_name));
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  if (container.name == name)
    return Error::invalid_argument("Renaming a container with the same name as its current name");
  std::string old_name = container.name;
  container.name = name;
  KILN_TRY(save(container));
  // Operators see the new name on the container's VM.
  if (auto vm = vms_.inspect(container.vm_id)) {
    auto labels = vm->labels;
    labels[std::string(kContainerNameLabel)] = name;
    (void)vms_.update(container.vm_id, {.labels = labels}, container.id);
  }
  publish(container, "rename", {{"oldName", "/" + old_name}});
  return ok();
}

Result<void> ContainerManager::remove_link(const std::string& link_name) {
  std::string_view name = link_name;
  if (name.starts_with('/')) name.remove_prefix(1);
  size_t slash = name.rfind('/');
  if (slash == std::string_view::npos) {
    KILN_TRY(store_.resolve(std::string(name)));  // dockerd looks the name up first
    return Error::invalid_argument("Conflict, cannot remove the default link name of the container");
  }
  std::string parent_name(name.substr(0, slash));
  std::string alias(name.substr(slash + 1));
  auto not_found = [&] { return Error::not_found(fmt::format("No such container: {}", link_name)); };
  auto parent = store_.resolve(parent_name);
  if (!parent) return not_found();
  auto rt = runtime(parent->id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, parent->id));
  auto& links = container.host_config.links;
  auto it = std::find_if(links.begin(), links.end(), [&](const ContainerLink& link) {
    return link.alias == alias && !link.name.empty();
  });
  if (it == links.end()) return not_found();
  links.erase(it);
  return save(container);
}

Result<ContainerRecord> ContainerManager::change_networks(
    const std::string& reference, const std::function<Result<void>(ContainerRecord&)>& change) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  KILN_TRY(change(container));
  // A running container's VM joins and leaves networks at once (on its spare NIC slots); the record is
  // saved only once it did.
  if (container.state == ContainerState::kRunning) {
    KILN_TRY(vms_.set_networking(container.vm_id, networks::vm_network_requests(container), container.ports,
                                 container.id));
  }
  KILN_TRY(save(container));
  return container;
}

Result<void> ContainerManager::update(const std::string& reference, const HostConfig& host_config,
                                      const Json& raw) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  HostConfig& current = container.host_config;
  bool resized = host_config.memory_bytes != current.memory_bytes ||
                 host_config.nano_cpus != current.nano_cpus || host_config.cpu_count != current.cpu_count;
  if (resized) {
    bool live = container.state == ContainerState::kRunning || container.state == ContainerState::kPaused ||
                container.state == ContainerState::kRestarting;
    if (live) {
      return Error::failed_precondition(
          fmt::format("Cannot update container {}: Kiln cannot resize a running container's VM (memory and "
                      "CPUs); stop it "
                      "first",
                      container.id));
    }
    UpdateVmRequest resize;
    if (host_config.memory_bytes != current.memory_bytes) {
      resize.memory_mib = host_config.memory_bytes == 0
                              ? config_.default_memory_mib
                              : std::max(kMinVmMemoryMib, (host_config.memory_bytes + (1 << 20) - 1) >> 20);
    }
    if (host_config.nano_cpus != current.nano_cpus || host_config.cpu_count != current.cpu_count) {
      unsigned cpus = config_.default_cpus;
      if (host_config.nano_cpus > 0)
        cpus = static_cast<unsigned>((host_config.nano_cpus + 999'999'999) / 1'000'000'000);
      else if (host_config.cpu_count > 0)
        cpus = host_config.cpu_count;
      resize.cpus = cpus;
    }
    KILN_TRY(vms_.update(container.vm_id, resize, container.id));
  }
  current.memory_bytes = host_config.memory_bytes;
  current.nano_cpus = host_config.nano_cpus;
  current.cpu_count = host_config.cpu_count;
  current.restart_policy = host_config.restart_policy;
  if (raw.is_object() && container.raw_host_config.is_object()) {
    for (const auto& [key, value] : raw.items()) container.raw_host_config[key] = value;
  }
  KILN_TRY(save(container));
  publish(container, "update");
  return ok();
}

Result<void> ContainerManager::remove_locked(Runtime& rt, ContainerRecord& container, bool remove_volumes) {
  if (!container.vm_id.empty()) {
    auto removed = vms_.remove(container.vm_id, true, container.id);
    if (!removed && removed.error().category() != ErrorCategory::kNotFound) return removed.error();
  }
  std::error_code ignored;
  fs::remove_all(fs::path(log_path(container.id)).parent_path(), ignored);
  KILN_TRY(store_.remove(container.id));
  if (remove_volumes) {
    // As dockerd: only the anonymous ones; a named volume outlives its containers. One another container
    // still uses stays.
    for (const auto& mount : container.host_config.mounts) {
      if (mount.type != MountPoint::Type::kVolume || !mount.anonymous || mount.name.empty()) continue;
      if (auto removed = volumes_.remove(mount.name, false);
          !removed && removed.error().category() != ErrorCategory::kNotFound)
        log::info("kept a volume of a removed container",
                  {{"volume", mount.name}, {"reason", removed.error().message()}});
    }
  }
  {
    std::lock_guard guard(execs_mutex_);
    std::erase_if(execs_, [&](const auto& entry) { return entry.second.container_id == container.id; });
  }
  publish(container, "destroy");
  {
    std::lock_guard guard(rt.state_mutex);
    rt.removed = true;
  }
  rt.state_changed.notify_all();
  {
    std::lock_guard guard(runtimes_mutex_);
    runtimes_.erase(container.id);
  }
  log::info("container removed", {{"container", container.name}, {"id", container.id}});
  return ok();
}

Result<void> ContainerManager::remove(const std::string& reference, bool force, bool remove_volumes) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  {
    std::lock_guard guard(rt->lock);
    auto container = KILN_TRY(load(*rt, found.id));
    if (rt->removing) {
      return Error::failed_precondition(
          fmt::format("removal of container {} is already in progress", container.id.substr(0, 12)));
    }
    bool live = container.state == ContainerState::kRunning || container.state == ContainerState::kPaused;
    if (live && !force) {
      if (container.state == ContainerState::kPaused) {
        return Error::failed_precondition(fmt::format(
            "You cannot remove a paused container {}. Unpause and then stop the container before attempting "
            "removal or force remove",
            container.id));
      }
      return Error::failed_precondition(fmt::format(
          "You cannot remove a running container {}. Stop the container before attempting removal or force "
          "remove",
          container.id));
    }
    if (!live || !rt->main) return remove_locked(*rt, container, remove_volumes);
    rt->removing = true;
    if (container.state == ContainerState::kPaused) (void)vms_.resume(container.vm_id);
  }
  // Running: killed first (its exit is handled on the relay thread, which needs the lock), then removed.
  auto stopped = stop_process(*rt, found.id, SIGKILL, std::chrono::seconds(10));
  std::lock_guard guard(rt->lock);
  auto container = store_.get(found.id);
  if (!container || !*container) return ok();  // an --rm container removed itself
  if (!stopped) log::warn("container did not stop cleanly before removal", {{"id", found.id}});
  return remove_locked(*rt, **container, remove_volumes);
}

bool ContainerManager::take_over(Runtime& rt, ContainerRecord& container) {
  if (container.main_process == 0) return false;
  auto vm = vms_.inspect(container.vm_id);
  if (!vm || (vm->state != VmState::kRunning && vm->state != VmState::kPaused)) return false;
  bool paused = vm->state == VmState::kPaused;
  // A paused guest cannot answer: it runs for the takeover and is paused again.
  if (paused && !vms_.resume(container.vm_id)) return false;
  auto taken = [&]() -> Result<void> {
    RunIo run = KILN_TRY(open_run_io(container));
    auto& log = run.log;
    auto& io = run.io;
    // What the log holds of this run is what the previous kilnd durably kept; the agent resends the rest,
    // including output that was in flight when that kilnd died.
    agent::ReattachRequest request{.stdout_offset = 0, .stderr_offset = 0};
    if (log) {
      LogReadOptions since_start;
      if (auto started = parse_rfc3339_time(container.started_at)) since_start.since = *started;
      (void)read_json_file_log(log_path(container.id), since_start, nullptr, {}, [&](const LogEntry& entry) {
        (entry.stream == LogStream::kStderr ? *request.stderr_offset : *request.stdout_offset) +=
            entry.text.size();
        return true;
      });
    }
    auto handle =
        KILN_TRY(vms_.reattach(container.vm_id, container.main_process, container.config.tty, request, io));
    container.pid = vm->monitor_pid;
    KILN_TRY(save(container));
    run_relay(rt, container, handle, run.relay_end, log);
    return ok();
  }();
  if (paused) (void)vms_.pause(container.vm_id);
  if (!taken) {
    log::warn("could not take over a running container",
              {{"id", container.id}, {"error", taken.error().message()}});
    return false;
  }
  log::info("container taken over", {{"container", container.name}, {"pid", container.pid}});
  return true;
}

Result<void> ContainerManager::recover() {
  for (auto& container : KILN_TRY(store_.list())) {
    auto rt = runtime(container.id);
    std::lock_guard guard(rt->lock);
    bool live = container.state == ContainerState::kRunning || container.state == ContainerState::kPaused ||
                container.state == ContainerState::kRestarting;
    if (container.state == ContainerState::kRemoving) {
      (void)remove_locked(*rt, container, false);
      continue;
    }
    if (!live) continue;
    if (container.state != ContainerState::kRestarting && take_over(*rt, container)) continue;
    // The main process did not survive (the VM stopped, or an agent that keeps nothing): it exited then.
    (void)vms_.stop(container.vm_id, config_.vm_stop_grace);
    bool was_restarting = container.state == ContainerState::kRestarting;
    container.state = ContainerState::kExited;
    container.pid = 0;
    if (!was_restarting) {
      container.exit_code = 255;
      container.finished_at = now_rfc3339(TimePrecision::kNanos);
    }
    KILN_TRY(save(container));
    publish(container, "die", {{"exitCode", std::to_string(container.exit_code)}});
    const auto& policy = container.host_config.restart_policy;
    bool restart = policy.kind == RestartPolicy::Kind::kAlways ||
                   (policy.kind == RestartPolicy::Kind::kUnlessStopped && !container.stopped_by_user) ||
                   (policy.kind == RestartPolicy::Kind::kOnFailure && !container.stopped_by_user);
    if (restart) {
      container.state = ContainerState::kRestarting;
      KILN_TRY(save(container));
      schedule_restart(container.id, rt->run, std::chrono::milliseconds(0));
    } else if (container.host_config.auto_remove) {
      (void)remove_locked(*rt, container, true);
    }
  }
  return ok();
}

}  // namespace kiln::daemon::containers

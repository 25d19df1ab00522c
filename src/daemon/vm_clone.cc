// VmManager::clone_vm: instant clone of a running (or paused) VM (docs/fork.md "Instant clone"). The source
// is paused for as long as its root disk is copied and its device state and RAM are saved
// (Engine::snapshot_running, into the new VM's directory), then resumes; the new VM starts forked from that
// snapshot. Its snapshot's
// files are unlinked as soon as the clone runs: its monitor maps the memory file (private, copy-on-write)
// and has read the device state, so the kernel keeps the pages for exactly as long as the clone runs, and
// nothing can remove them earlier (a prune, a kilnd restart) or leave them behind (a crash of kilnd or of
// the clone). Its next start boots cold from its disk copy. A stopped source is cloned as `--clone` does
// (its disk copied, the new VM booted).
#include <fmt/format.h>

#include <filesystem>

#include "common/log.h"
#include "common/random_id.h"
#include "daemon/root_disk.h"
#include "daemon/vm_manager.h"
#include "daemon/vm_slot.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;

double elapsed_ms(Clock::time_point start) {
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  return static_cast<double>(took.count()) / 1000.0;
}

// What the clone inherits: the machine (its guest saw it) and how it is reached, minus what is the source's
// alone (fixed addresses and MACs, DNS aliases, published host ports, shared folders).
CreateVmRequest clone_request(const VmRecord& source, const CloneVmRequest& clone) {
  CreateVmRequest request{.name = clone.name,
                          .cpus = source.cpus,
                          .memory_mib = source.memory_mib,
                          .disk_mib = source.disk_mib,
                          .source = {.kind = RootSource::Kind::kVm, .value = source.id},
                          .kernel = source.kernel,
                          .labels = source.labels,
                          .tag = clone.tag.value_or(source.tag)};
  for (const auto& [key, value] : clone.labels) request.labels[key] = value;
  std::vector<VmNetworkRequest> networks;
  for (const auto& network : source.networks) networks.push_back({.network = network.network});
  request.networks = std::move(networks);
  return request;
}

Error cannot_clone(const VmRecord& source, std::string_view why) {
  return Error::failed_precondition(fmt::format("cannot clone VM {}: {}", source.name, why));
}

}  // namespace

Result<VmRecord> VmManager::clone_vm(const std::string& source_name, CloneVmRequest request) {
  VmRecord found = KILN_TRY(store_.resolve(source_name));
  KILN_TRY(check_owner(found, {}, "clone"));
  if (found.source.kind == RootSource::Kind::kContainer) return cannot_clone(found, "it runs a container");
  CreateVmRequest create = clone_request(found, request);

  if (found.state == VmState::kStopped || found.state == VmState::kError) {
    // A disk copy, as `kiln vm create --clone` makes (it refuses a source that started meanwhile).
    VmRecord made = KILN_TRY(create_vm(std::move(create)));
    if (!request.start) return made;
    auto started = start(made.id);
    if (!started) (void)remove(made.id, true);
    return started;
  }
  if (found.state != VmState::kRunning && found.state != VmState::kPaused) {
    return cannot_clone(found, fmt::format("it is {} (a running, paused or stopped VM can be cloned)",
                                           to_string(found.state)));
  }

  auto source_slot = slot_for(found.id);
  std::unique_lock source_guard(source_slot->lock);
  auto current = KILN_TRY(store_.get(found.id));
  if (!current) return Error::not_found(fmt::format("no such VM: {}", source_name));
  const VmRecord source = std::move(*current);
  bool paused = source.state == VmState::kPaused;  // and stays paused: the engine resumes only a running VM
  if ((source.state != VmState::kRunning && !paused) || !source_slot->running) {
    return cannot_clone(source, fmt::format("it is {}", to_string(source.state)));
  }
  if (source.folders_enabled && !source.folders.empty()) {
    // QEMU blocks migration, and so saving the device state, while a virtio-9p export is mounted.
    return cannot_clone(source, "it has shared folders, whose state cannot be saved (disable them first)");
  }
  engine::VmInstance& source_vm = *source_slot->running->instance;
  std::string source_disk = vm_dir(source.id) + "/root.ext4";
  auto copy_disk = [&](const VmRecord& vm) -> Result<void> {
    RootDiskInputs inputs{
        .scratch_dir = vm_dir(vm.id) + "/scratch",
        .vm_root_disk = [&](const std::string&) -> Result<std::string> { return source_disk; }};
    return build_root_disk(vm_dir(vm.id) + "/root.ext4", vm.disk_mib, vm.source, inputs);
  };

  // The snapshot: made while the new VM is being created, so that its failure removes the VM.
  std::optional<engine::VmTemplate> snapshot;
  std::string key = "clone-" + KILN_TRY(random_hex_id()).substr(0, 32);
  double snapshot_ms = 0;
  VmRecord made = KILN_TRY(create_record(std::move(create), [&](const VmRecord& vm) -> Result<void> {
    std::error_code error;
    fs::create_directories(vm_dir(vm.id), error);
    if (error) return Error::internal(fmt::format("create {}: {}", vm_dir(vm.id), error.message()));
    auto started = Clock::now();
    if (!request.start) {
      // Nothing forks from it: only the disk, copied while the guest is paused (consistent as a power cut).
      if (!paused) KILN_TRY(source_vm.pause());
      auto copied = copy_disk(vm);
      if (!paused) KILN_TRY(source_vm.resume());
      KILN_TRY(copied);
      snapshot_ms = elapsed_ms(started);
      return ok();
    }
    std::string dir = vm_dir(vm.id) + "/snapshot";
    fs::create_directories(dir, error);
    if (error) return Error::internal(fmt::format("create {}: {}", dir, error.message()));
    snapshot = KILN_TRY(engine_.snapshot_running(source_vm, dir, key, [&] { return copy_disk(vm); }));
    snapshot_ms = elapsed_ms(started);
    return ok();
  }));
  source_guard.unlock();
  log::info("VM cloned", {{"vm", made.name}, {"source", source.name}, {"ms", snapshot_ms}});
  if (!request.start) return made;

  // Starts the clone from the snapshot, as boot() starts a VM forked from a template.
  auto slot = slot_for(made.id);
  std::unique_lock guard(slot->lock);
  std::error_code ignored;
  // Between create_record and this lock the new VM was listed, stopped: another client may have removed or
  // started it (then it booted from its disk copy). Theirs to keep; the snapshot goes unused.
  auto record = store_.get(made.id);
  if (!record || !*record || (*record)->state != VmState::kStopped) {
    fs::remove_all(vm_dir(made.id) + "/snapshot", ignored);
    if (!record) return record.error();
    if (!*record)
      return Error::not_found(fmt::format("VM {} was removed while it was being cloned", made.name));
    return std::move(**record);
  }
  made = std::move(**record);
  // Starts as a clone of the snapshot, through the one start path: its own taps and addresses, then
  // CLONE_INIT (its root disk is mounted already: the source booted into it).
  auto started = boot(*slot, made, &*snapshot);
  // The clone's monitor maps the memory file and has read the state: their names can go (see the top).
  fs::remove_all(vm_dir(made.id) + "/snapshot", ignored);
  if (!started) {
    guard.unlock();
    (void)remove(made.id, true);
    return Error(started.error().category(),
                 fmt::format("clone of VM {} failed to start: {}", source.name, started.error().message()));
  }
  made.start_timings.insert(made.start_timings.begin(), {"snapshot", snapshot_ms});
  (void)store_.update(made);
  log::info("VM started as a clone", {{"vm", made.name}, {"source", source.name}, {"pid", made.monitor_pid}});
  return made;
}

}  // namespace kiln::daemon

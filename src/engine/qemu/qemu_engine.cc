#include "engine/qemu/qemu_engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/log.h"
#include "common/sha256.h"
#include "common/unix_socket.h"
#include "engine/accelerator.h"
#include "engine/qemu/guest_ram_copy.h"
#include "engine/qemu/qemu_vm.h"
#include "engine/share_entries.h"

namespace kiln::engine::qemu {
namespace {

constexpr auto kMonitorTimeout = std::chrono::seconds(30);

Result<std::string> find_on_path(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return Error::not_found(fmt::format("QEMU binary {} not found or not executable", name));
  }
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): read-only
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    size_t colon = dirs.find(':');
    std::string candidate = fmt::format("{}/{}", dirs.substr(0, colon), name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return Error::not_found(fmt::format("{} not found on PATH (install the qemu-system-x86 package)", name));
}

Result<void> require_readable(const std::string& path, std::string_view what) {
  struct stat st {};
  if (path.empty()) return Error::invalid_argument(fmt::format("no {} given", what));
  if (::stat(path.c_str(), &st) != 0) return Error::last_os_error(fmt::format("{} {}", what, path));
  if (!S_ISREG(st.st_mode))
    return Error::invalid_argument(fmt::format("{} {} is not a regular file", what, path));
  if (::access(path.c_str(), R_OK) != 0) return Error::last_os_error(fmt::format("{} {}", what, path));
  return ok();
}

Result<void> require_directory(const std::string& path, std::string_view tag) {
  struct stat st {};
  if (tag.empty()) return Error::invalid_argument(fmt::format("shared directory {} has no tag", path));
  if (::stat(path.c_str(), &st) != 0) return Error::last_os_error(fmt::format("shared directory {}", path));
  if (!S_ISDIR(st.st_mode))
    return Error::invalid_argument(fmt::format("shared directory {} is not a directory", path));
  return ok();
}

// QEMU's own diagnostics end up in its log; its last line says why it refused to start.
std::string last_line_of(const std::string& path) {
  auto text = read_file(path, 1 << 20);
  if (!text) return {};
  std::string_view view = *text;
  while (!view.empty() && (view.back() == '\n' || view.back() == '\r')) view.remove_suffix(1);
  size_t newline = view.rfind('\n');
  return std::string(newline == std::string_view::npos ? view : view.substr(newline + 1));
}

using Clock = std::chrono::steady_clock;

std::chrono::microseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

// "QEMU emulator version 7.2.22 (Debian ...)" -> "7.2.22".
Result<std::string> probe_version(const std::string& binary) {
  std::string out = KILN_TRY_CONTEXT(run_command_checked({binary, "-version"}), "ask QEMU its version");
  constexpr std::string_view kPrefix = "QEMU emulator version ";
  size_t at = out.find(kPrefix);
  if (at == std::string::npos) return Error::protocol(fmt::format("{} -version said: {}", binary, out));
  size_t begin = at + kPrefix.size();
  size_t end = out.find_first_not_of("0123456789.", begin);
  return out.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// The spec with every host path absolute: QEMU runs in the VM's runtime directory (its identity, see adopt),
// so a relative path on its command line would resolve there.
VmSpec with_absolute_paths(const VmSpec& spec) {
  auto absolute = [](std::string& path) {
    std::error_code ignored;
    if (!path.empty() && path.front() != '/') path = std::filesystem::absolute(path, ignored).string();
  };
  VmSpec out = spec;
  for (std::string* path : {&out.kernel, &out.initrd, &out.runtime_dir, &out.memory.path, &out.restore_from})
    absolute(*path);
  for (auto& disk : out.disks) absolute(disk.path);
  for (auto& share : out.shares) {
    absolute(share.host_path);
    for (auto& entry : share.entries) absolute(entry.source);
  }
  return out;
}

// The spec with everything a template does not depend on left out: names, paths, disk images.
VmSpec normalized_for_key(const VmSpec& spec) {
  VmSpec normal = spec;
  normal.name = "template";
  normal.runtime_dir = "/run";
  normal.kernel = "kernel";
  normal.initrd = normal.initrd.empty() ? "" : "initrd";
  normal.memory = {.kind = MemoryBacking::Kind::kFile, .path = "memory", .shared = true};
  normal.restore_from.clear();
  normal.die_with_launcher = false;
  for (auto& disk : normal.disks) disk = {.read_only = disk.read_only};
  for (size_t i = 0; i < normal.shares.size(); ++i) {
    normal.shares[i].host_path = "/share";
    normal.shares[i].read_only = false;  // enforced by the host side, invisible to the guest's saved state
    normal.shares[i].guest_ownership = false;
    normal.shares[i].entries.clear();
    // Host side only (the monitor's mount namespace, 9p's inode remapping): the guest's saved state is the
    // same with or without.
    normal.shares[i].late_entries = false;
  }
  for (auto& nic : normal.nics) nic = {};  // the template's taps and MACs are not the clone's
  return normal;
}

}  // namespace

Result<void> QemuEngine::load_into(QemuVm& vm, PreparedRestore restore, StartTimings& timings) {
  auto started = Clock::now();
  auto loaded = vm.load_state(std::move(restore));
  if (loaded) {
    timings.push_back({"load", since(started)});
    return ok();
  }
  // Whatever the VM's die_with_launcher, a QEMU that could not load its state is not left behind.
  if (auto killed = vm.kill(); !killed) {
    log::warn("could not kill QEMU after a failed restore", {{"error", killed.error().message()}});
  }
  // QEMU 7.2 exits when the stream is bad and says why on stderr; that beats "QEMU exited".
  std::string reason = last_line_of(vm.paths().monitor_log);
  if (reason.empty() || loaded.error().category() != ErrorCategory::kUnavailable) return loaded.error();
  return Error::failed_precondition(fmt::format("restore the VM's state: {}", reason));
}

Result<std::unique_ptr<QemuEngine>> QemuEngine::create(std::string qemu_binary, Accelerator accelerator,
                                                       unsigned tcg_code_cache_mib) {
  std::string binary = KILN_TRY(find_on_path(qemu_binary.empty() ? "qemu-system-x86_64" : qemu_binary));
  HostFacts host{
      .accelerator = accelerator, .tsc_khz = host_tsc_khz(), .tcg_code_cache_mib = tcg_code_cache_mib};
  return std::unique_ptr<QemuEngine>(new QemuEngine(std::move(binary), host));  // NOLINT: private constructor
}

Result<std::unique_ptr<QemuVm>> QemuEngine::start(const VmSpec& given, StartMode mode,
                                                  StartTimings& timings) {
  const VmSpec spec = with_absolute_paths(given);
  KILN_TRY(require_readable(spec.kernel, "kernel"));
  if (!spec.initrd.empty()) KILN_TRY(require_readable(spec.initrd, "initramfs"));
  for (const auto& disk : spec.disks) {
    if (!disk.path.empty()) KILN_TRY(require_readable(disk.path, "disk"));
  }
  if (spec.root_disk >= 0 && static_cast<size_t>(spec.root_disk) >= spec.disks.size()) {
    return Error::invalid_argument(
        fmt::format("root disk {} is not one of the VM's {} disks", spec.root_disk, spec.disks.size()));
  }
  for (const auto& share : spec.shares) KILN_TRY(require_directory(share.host_path, share.tag));
  if (spec.cpus == 0) return Error::invalid_argument("a VM needs at least one CPU");
  std::vector<PrivateBind> share_binds = KILN_TRY(prepare_share_entries(spec));
  bool late_entries = std::any_of(spec.shares.begin(), spec.shares.end(),
                                  [](const ShareSpec& share) { return share.late_entries; });

  auto started = Clock::now();
  VmPaths paths = paths_for(spec.runtime_dir);
  UniqueFd monitor_log(::open(paths.monitor_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!monitor_log) return Error::last_os_error(fmt::format("create {}", paths.monitor_log));
  // Kiln listens and QEMU inherits the sockets (command_line.h): our QMP connection is queued before QEMU
  // runs, and its greeting arrives the moment its monitor is up: no polling for the socket to appear.
  UniqueFd qmp_listener = KILN_TRY(listen_unix_socket(paths.qmp_socket, 4));
  UniqueFd agent_listener = KILN_TRY(listen_unix_socket(paths.agent_socket, 4));
  UniqueFd qmp_connection = KILN_TRY(connect_unix_socket(paths.qmp_socket, "the VM's monitor"));

  std::vector<std::string> args = qemu_arguments(binary_, spec, host_, mode);
  std::vector<std::pair<int, int>> pass_fds = {{qmp_listener.get(), kQmpListenFd},
                                               {agent_listener.get(), kAgentListenFd}};
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    if (!spec.nics[i].tap || !*spec.nics[i].tap)
      return Error::invalid_argument(fmt::format("NIC {} has no tap", i));
    pass_fds.emplace_back(spec.nics[i].tap->get(), kFirstTapFd + static_cast<int>(i));
  }
  log::debug("launching QEMU", {{"vm", spec.name}, {"accel", to_string(host_.accelerator)}});
  ChildProcess process = KILN_TRY(ChildProcess::spawn({.argv = args,
                                                       // Its identity for adopt: moves with relocate.
                                                       .cwd = spec.runtime_dir,
                                                       .stdin_mode = Stdio::kNull,
                                                       .stdout_fd = monitor_log.get(),
                                                       .stderr_fd = monitor_log.get(),
                                                       .pass_fds = pass_fds,
                                                       .new_session = true,
                                                       .kill_with_parent = spec.die_with_launcher,
                                                       .private_binds = std::move(share_binds),
                                                       .private_mount_namespace = late_entries}));
  // Only QEMU holds the listeners now: if it dies, the queued connection is reset instead of hanging.
  qmp_listener.reset();
  agent_listener.reset();
  timings.push_back({"spawn", since(started)});
  started = Clock::now();
  auto qmp = QmpClient::handshake(std::move(qmp_connection), kMonitorTimeout);
  if (!qmp) {
    if (auto exited = process.wait_for(std::chrono::seconds(2)); exited && *exited) {
      std::string reason = last_line_of(paths.monitor_log);
      return Error::unavailable(
          fmt::format("QEMU failed to start: {}", reason.empty() ? (*exited)->describe() : reason));
    }
    return qmp.error();
  }
  timings.push_back({"monitor", since(started)});
  auto monitor = MonitorProcess::spawned(std::move(process), !spec.die_with_launcher);
  auto vm = std::make_unique<QemuVm>(std::move(monitor), std::move(*qmp), paths);
  vm->set_shape(snapshot::shape_of(spec, guest_cmdline(spec, host_)));
  vm->set_disk_slots(disk_slots_of(spec));
  return vm;
}

Result<std::string> QemuEngine::version() {
  std::lock_guard lock(version_mutex_);
  if (version_.empty()) version_ = KILN_TRY(probe_version(binary_));
  return version_;
}

Result<std::unique_ptr<VmInstance>> QemuEngine::launch(const VmSpec& spec) {
  // A snapshot is checked against the spec before a QEMU is started for it.
  std::optional<PreparedRestore> restore;
  if (!spec.restore_from.empty()) restore = KILN_TRY(prepare_restore(spec));
  VmSpec started = spec;
  if (restore && !restore->memory_path.empty()) {
    // A suspend into a memory file comes back as a fork of it: its RAM maps the file private
    // (copy-on-write), so only what the guest touches is read and only what it writes is its own. The
    // mapping keeps the pages when the caller removes the suspended state.
    started.memory = {.kind = MemoryBacking::Kind::kFile, .path = restore->memory_path, .shared = false};
  }
  StartTimings timings;
  auto vm = KILN_TRY(start(started, restore ? StartMode::kIncoming : StartMode::kBoot, timings));
  if (restore) KILN_TRY(load_into(*vm, std::move(*restore), timings));
  vm->set_start_timings(std::move(timings));
  return std::unique_ptr<VmInstance>(std::move(vm));
}

Result<std::string> QemuEngine::template_key(const VmSpec& spec) {
  auto content_hash = [&](const std::string& path) -> Result<std::string> {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Error::last_os_error(path);
    std::string id = fmt::format("{}:{}:{}.{}", path, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    {
      std::lock_guard lock(hashes_mutex_);
      if (auto found = hashes_.find(id); found != hashes_.end()) return found->second;
    }
    std::string hash = KILN_TRY(sha256_file_hex(path));
    std::lock_guard lock(hashes_mutex_);
    hashes_[id] = hash;
    return hash;
  };
  std::string kernel = KILN_TRY(content_hash(spec.kernel));
  std::string initrd = spec.initrd.empty() ? "" : KILN_TRY(content_hash(spec.initrd));
  // The command line carries the machine, devices, slots and their read-only flags, CPUs, memory and the
  // kernel command line (with the TSC rate under TCG).
  std::vector<std::string> args =
      qemu_arguments("qemu", normalized_for_key(spec), host_, StartMode::kIncoming);
  std::string qemu_version = KILN_TRY(version());
  Sha256 digest;
  // 2: NIC devices have per-slot MACs (nic_device_mac). 3: a placeholder slot is a raw node over null-co, as
  // a disk is raw over file (so a disk can be swapped in); the device state of a template whose slots were
  // bare null-co nodes names other block nodes than a clone of today's command line has.
  digest.update(fmt::format("kiln-template 3\nengine qemu {}\nkernel {}\ninitrd {}\ntsc {}\n", qemu_version,
                            kernel, initrd, host_.tsc_khz));
  for (const auto& arg : args) {
    digest.update(arg);
    digest.update(std::string_view("\0", 1));
  }
  return digest.finish_hex();
}

Result<VmTemplate> QemuEngine::build_template(const VmSpec& spec, const std::string& dir,
                                              const std::function<Result<void>(VmInstance&)>& until_idle) {
  std::string key = KILN_TRY(template_key(spec));
  VmSpec booted = spec;
  // The guest's RAM is the template's memory file, written through while it boots (share=on).
  booted.memory = {
      .kind = MemoryBacking::Kind::kFile, .path = fmt::format("{}/{}", dir, kMemoryFileName), .shared = true};
  booted.restore_from.clear();
  StartTimings timings;
  auto vm = KILN_TRY(start(booted, StartMode::kBoot, timings));
  KILN_TRY_CONTEXT(until_idle(*vm), "wait for the template's guest to be idle");
  KILN_TRY(save_template_state(vm->qmp(), vm->monitor(),
                               snapshot::shape_of(booted, guest_cmdline(booted, host_)), key, dir));
  return open_template(dir);
}

Result<VmTemplate> QemuEngine::open_template(const std::string& dir) {
  snapshot::Manifest manifest = KILN_TRY(read_template_manifest(dir));
  std::string qemu_version = KILN_TRY(version());
  if (manifest.engine_version != qemu_version) {
    // A stream is only promised to load into the QEMU that wrote it (and the template key says so too).
    return Error::failed_precondition(fmt::format("template {} was built by QEMU {}; this is QEMU {}", dir,
                                                  manifest.engine_version, qemu_version));
  }
  const snapshot::SnapshotFile& memory = manifest.files.at(std::string(kMemoryRole));
  if (memory.bytes != manifest.vm.memory_mib << 20) {
    return Error::failed_precondition(fmt::format("template {}: memory file of {} bytes for {} MiB of RAM",
                                                  dir, memory.bytes, manifest.vm.memory_mib));
  }
  return make_template({.dir = dir,
                        .key = manifest.template_key,
                        .memory_path = fmt::format("{}/{}", dir, memory.name),
                        .memory_bytes = memory.bytes,
                        .cpus = manifest.vm.cpus,
                        .memory_mib = manifest.vm.memory_mib,
                        .disk_read_only = manifest.vm.disk_read_only,
                        .disk_capacity = manifest.vm.disk_capacity,
                        .shares = manifest.vm.shares.size(),
                        .nics = manifest.vm.nics});
}

Result<std::unique_ptr<VmInstance>> QemuEngine::fork(const VmTemplate& from, const VmSpec& spec) {
  KILN_TRY(check_forkable(from, spec));
  // Checked again now, not only when the template was opened: a file removed or truncated since would make
  // QEMU fail late, or worse, map a short file.
  struct stat st {};
  if (::stat(from.memory_path().c_str(), &st) != 0) {
    return Error::failed_precondition(fmt::format("template memory file {} is missing", from.memory_path()));
  }
  if (static_cast<uint64_t>(st.st_size) != from.memory_bytes()) {
    return Error::failed_precondition(fmt::format("template memory file {} is {} bytes; the template has {}",
                                                  from.memory_path(), st.st_size, from.memory_bytes()));
  }
  PreparedRestore state = KILN_TRY(prepare_fork(from.dir()));
  VmSpec clone = spec;
  // Private: the clone's writes are its own copies; the template's file is never written.
  clone.memory = {.kind = MemoryBacking::Kind::kFile, .path = from.memory_path(), .shared = false};
  clone.restore_from.clear();
  StartTimings timings;
  auto vm = KILN_TRY(start(clone, StartMode::kIncoming, timings));
  // The guest probed its disks when the template booted: the slots are as large as the template's.
  vm->set_disk_slots(disk_slots_of(clone, &from));
  KILN_TRY(load_into(*vm, std::move(state), timings));
  vm->set_start_timings(std::move(timings));
  return std::unique_ptr<VmInstance>(std::move(vm));
}

Result<VmTemplate> QemuEngine::snapshot_running(VmInstance& vm, const std::string& dir,
                                                const std::string& key,
                                                const std::function<Result<void>()>& while_paused) {
  auto* qemu_vm = dynamic_cast<QemuVm*>(&vm);
  if (qemu_vm == nullptr) return Error::invalid_argument("not a VM of the QEMU engine");
  const snapshot::VmShape& shape = qemu_vm->shape();
  if (shape.cpus == 0) return Error::internal("QemuEngine::snapshot_running: the VM's shape is unknown");
  // Refused before the guest is paused: a VM whose RAM is a file of its own (a fork) has no memfd.
  UniqueFd ram = KILN_TRY(open_guest_ram_memfd(qemu_vm->monitor_pid(), shape.memory_mib << 20));
  KILN_TRY(save_running(qemu_vm->qmp(), qemu_vm->monitor(), shape,
                        {.role = snapshot::kRoleTemplate, .key = key}, dir, ram.get(), while_paused));
  return open_template(dir);
}

Result<void> QemuEngine::suspend_running(VmInstance& vm, const std::string& dir) {
  auto* qemu_vm = dynamic_cast<QemuVm*>(&vm);
  if (qemu_vm == nullptr) return Error::invalid_argument("not a VM of the QEMU engine");
  const snapshot::VmShape& shape = qemu_vm->shape();
  if (shape.cpus == 0) return Error::internal("QemuEngine::suspend_running: the VM's shape is unknown");
  // Decided before the guest is paused: a VM whose RAM is a private mapping of a file (a fork, or a VM
  // restored from such a suspend) has no memfd to copy, and one whose memfd cannot be opened (another
  // user's QEMU) neither; its caller streams its state instead, as every suspend did before.
  auto ram = open_guest_ram_memfd(qemu_vm->monitor_pid(), shape.memory_mib << 20);
  if (!ram) {
    return Error::unsupported(
        fmt::format("cannot suspend the VM into a memory file: {}", ram.error().message()));
  }
  return save_running(qemu_vm->qmp(), qemu_vm->monitor(), shape,
                      {.role = snapshot::kRoleSuspendMemory, .end_monitor = true}, dir, ram->get(),
                      [] { return ok(); });
}

Result<std::unique_ptr<VmInstance>> QemuEngine::adopt(const VmSpec& spec, pid_t monitor_pid) {
  VmPaths paths = paths_for(spec.runtime_dir);
  // QEMU runs in its VM's runtime directory, which is unique per VM and follows a relocated VM; one started
  // by an older kilnd is recognized by its console log's path on its command line.
  MonitorProcess monitor = KILN_TRY(MonitorProcess::adopt(monitor_pid, paths.console_log, paths.runtime_dir));
  auto qmp =
      KILN_TRY_CONTEXT(QmpClient::connect(paths.qmp_socket, monitor.exit_fd(), std::chrono::seconds(5)),
                       "reconnect to the VM's monitor");
  auto vm = std::make_unique<QemuVm>(std::move(monitor), std::move(qmp), paths);
  vm->set_shape(snapshot::shape_of(spec, guest_cmdline(spec, host_)));
  // A placeholder's size is in the spec; a disk's is its file's (no larger than what the guest saw).
  vm->set_disk_slots(disk_slots_of(spec));
  return std::unique_ptr<VmInstance>(std::move(vm));
}

}  // namespace kiln::engine::qemu

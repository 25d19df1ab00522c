#include "engine/qemu/qemu_snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "common/log.h"
#include "common/rfc3339.h"
#include "common/sha256.h"
#include "engine/qemu/guest_ram_copy.h"

namespace kiln::engine::qemu {
namespace {

using Clock = std::chrono::steady_clock;

// Generous: the stream goes at disk speed, but a large guest under TCG still takes a while.
constexpr auto kMigrationTimeout = std::chrono::minutes(10);
constexpr auto kQuitTimeout = std::chrono::seconds(30);
constexpr std::string_view kFdName = "kiln-state";
// QEMU caps a migration at 32 MiB/s by default (to spare a live guest's network); a stopped VM writing to a
// local file wants no cap. 1 TiB/s is "unlimited" and within QEMU's range check.
constexpr uint64_t kUnlimitedBandwidth = uint64_t{1} << 40;
// Every QEMU migration stream starts with this magic (QEMU_VM_FILE_MAGIC).
constexpr std::string_view kStreamMagic = "QEVM";

Result<void> require_empty_directory(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> handle(::opendir(dir.c_str()), ::closedir);
  if (!handle) return Error::last_os_error(fmt::format("snapshot directory {}", dir));
  while (dirent* entry = ::readdir(handle.get())) {  // NOLINT(concurrency-mt-unsafe): own DIR stream
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      return Error::failed_precondition(fmt::format("snapshot directory {} is not empty", dir));
    }
  }
  return ok();
}

Result<std::string> qemu_version(QmpClient& qmp) {
  Json version = KILN_TRY(qmp.execute("query-version"));
  const Json& qemu = version["qemu"];
  if (!qemu.is_object()) return Error::protocol("QMP query-version: no version");
  return fmt::format("{}.{}.{}", qemu.value("major", 0), qemu.value("minor", 0), qemu.value("micro", 0));
}

Result<Json> query_or_exit(QmpClient& qmp, MonitorProcess& monitor, std::string_view command,
                           std::string_view what) {
  auto reply = qmp.execute(command);
  if (!reply && monitor.has_exited()) return Error::unavailable(fmt::format("{}: QEMU exited", what));
  if (!reply) return reply.error().with_context(what);
  return reply;
}

bool migration_ended(const Json& data) {
  std::string status = data.value("status", "");
  return status == "completed" || status == "failed" || status == "cancelled";
}

// Waits for the migration's MIGRATION event saying it ended (the `events` capability is on), then returns
// ok if it completed; QEMU's error-desc if it failed. A QEMU that exits meanwhile (7.2 exits when loading
// fails) closes the monitor: kUnavailable.
Result<void> wait_for_migration(QmpClient& qmp, MonitorProcess& monitor, std::string_view what) {
  auto deadline = Clock::now() + kMigrationTimeout;
  auto event = qmp.wait_for_event("MIGRATION", migration_ended, deadline);
  if (!event && monitor.has_exited()) return Error::unavailable(fmt::format("{}: QEMU exited", what));
  if (!event && event.error().category() == ErrorCategory::kTimeout) {
    (void)qmp.execute("migrate_cancel");
    return Error::timeout(fmt::format("{}: not done after {} min", what, kMigrationTimeout.count()));
  }
  if (!event) return event.error().with_context(what);
  std::string status = (*event)["data"].value("status", "");
  if (status == "completed") return ok();
  Json info = KILN_TRY(query_or_exit(qmp, monitor, "query-migrate", what));
  return Error::unavailable(fmt::format("{}: {}", what, info.value("error-desc", "migration " + status)));
}

// Migration capabilities: events (wait_for_migration) and, for templates and their clones, x-ignore-shared:
// RAM that lives in a shared file is not copied into the stream at all; the clone maps the file instead.
Result<void> set_capabilities(QmpClient& qmp, bool ignore_shared) {
  Json capabilities = Json::array({{{"capability", "events"}, {"state", true}},
                                   {{"capability", "x-ignore-shared"}, {"state", ignore_shared}}});
  KILN_TRY(qmp.execute("migrate-set-capabilities", Json{{"capabilities", capabilities}}));
  return ok();
}

// stop + migrate into `fd`; returns the bytes written, on disk (fsynced).
Result<uint64_t> write_state(QmpClient& qmp, MonitorProcess& monitor, int fd, bool ignore_shared) {
  KILN_TRY(qmp.execute("stop"));
  KILN_TRY(set_capabilities(qmp, ignore_shared));
  KILN_TRY(qmp.execute("migrate-set-parameters", Json{{"max-bandwidth", kUnlimitedBandwidth}}));
  KILN_TRY(qmp.pass_fd(kFdName, fd));
  if (auto started = qmp.execute("migrate", Json{{"uri", fmt::format("fd:{}", kFdName)}}); !started) {
    (void)qmp.execute("closefd", Json{{"fdname", kFdName}});  // not consumed by a refused migrate
    // E.g. a migration blocker: a 9p share mounted in the guest.
    return Error::failed_precondition(
        fmt::format("cannot save the VM's state: {}", started.error().message()));
  }
  KILN_TRY(wait_for_migration(qmp, monitor, "save the VM's state"));
  if (::fsync(fd) != 0) return Error::last_os_error("fsync the VM's state file");
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error::last_os_error("stat the VM's state file");
  return static_cast<uint64_t>(st.st_size);
}

// The state is safe on disk: end QEMU (and with it the guest's memory).
Result<void> end_monitor(QmpClient& qmp, MonitorProcess& monitor) {
  // QEMU may close the connection before its reply arrives; the exit is what counts.
  (void)qmp.execute("quit", nullptr, std::chrono::seconds(5));
  if (KILN_TRY(monitor.wait_for(kQuitTimeout))) return ok();
  log::warn("QEMU did not quit after saving its state; killing it", {{"pid", monitor.pid()}});
  return monitor.kill();
}

}  // namespace

Result<void> save_vm_state(QmpClient& qmp, MonitorProcess& monitor, const snapshot::VmShape& shape,
                           const std::string& dir) {
  if (monitor.has_exited()) return Error::failed_precondition("cannot save a VM that is not running");
  KILN_TRY(require_empty_directory(dir));
  auto started = Clock::now();
  std::string engine_version = KILN_TRY(qemu_version(qmp));
  Json status = KILN_TRY(qmp.execute("query-status"));
  bool was_running = status.value("running", false);

  std::string path = fmt::format("{}/{}", dir, kStateFileName);
  // 0600: the file holds the guest's memory, secrets included.
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file) return Error::last_os_error(fmt::format("create {}", path));
  auto undo = [&](const Error& error) -> Error {
    ::unlink(path.c_str());
    // `cont` also resumes a source whose migration completed (QEMU reactivates its disks).
    if (was_running && !monitor.has_exited()) {
      if (auto resumed = qmp.execute("cont"); !resumed) {
        log::warn("could not resume the VM after a failed save", {{"error", resumed.error().message()}});
      }
    }
    return error;
  };

  auto bytes = write_state(qmp, monitor, file.get(), false);
  if (!bytes) return undo(bytes.error());
  file.reset();
  snapshot::Manifest manifest{.engine = std::string(kEngineName),
                              .engine_version = engine_version,
                              .created_at = now_rfc3339(),
                              .vm = shape,
                              .files = {{std::string(kStateRole), {std::string(kStateFileName), *bytes}}}};
  if (auto written = snapshot::write_manifest(dir, manifest); !written) return undo(written.error());
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log::info("VM state saved", {{"dir", dir}, {"bytes", *bytes}, {"ms", elapsed.count()}});
  return end_monitor(qmp, monitor);
}

namespace {

// The snapshot's state stream, open. A file that is not a QEMU stream at all is refused before a QEMU is
// started for it.
Result<UniqueFd> open_state_stream(const std::string& dir, const snapshot::Manifest& manifest) {
  std::string path = KILN_TRY(snapshot::state_file_path(dir, manifest, kStateRole));
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return Error::last_os_error(fmt::format("open {}", path));
  char magic[4] = {};
  if (::pread(file.get(), magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic) ||
      std::string_view(magic, sizeof magic) != kStreamMagic) {
    return Error::failed_precondition(fmt::format("snapshot state file {} is not a QEMU state stream", path));
  }
  return file;
}

}  // namespace

Result<PreparedRestore> prepare_restore(const VmSpec& spec) {
  const std::string& dir = spec.restore_from;
  snapshot::Manifest manifest = KILN_TRY(snapshot::read_manifest(dir));
  KILN_TRY(snapshot::check_restorable(manifest, spec, kEngineName));
  std::string memory_path;
  if (manifest.role == snapshot::kRoleSuspendMemory) {
    // Its RAM is not in the stream: the restored VM maps this file (checked for its recorded size, which
    // must be the VM's RAM: a short file mapped would fault the guest).
    memory_path = KILN_TRY(snapshot::state_file_path(dir, manifest, kMemoryRole));
    uint64_t bytes = manifest.files.at(std::string(kMemoryRole)).bytes;
    if (bytes != manifest.vm.memory_mib << 20) {
      return Error::failed_precondition(fmt::format(
          "suspended VM {}: memory file of {} bytes for {} MiB of RAM", dir, bytes, manifest.vm.memory_mib));
    }
  }
  UniqueFd file = KILN_TRY(open_state_stream(dir, manifest));
  bool mapped = !memory_path.empty();
  return PreparedRestore{.manifest = std::move(manifest),
                         .state_file = std::move(file),
                         .ignore_shared = mapped,
                         .memory_path = std::move(memory_path)};
}

Result<snapshot::Manifest> read_template_manifest(const std::string& dir) {
  snapshot::Manifest manifest = KILN_TRY(snapshot::read_manifest(dir));
  if (manifest.role != snapshot::kRoleTemplate) {
    return Error::failed_precondition(
        fmt::format("{} holds a {} snapshot, not a template to fork from", dir, manifest.role));
  }
  if (manifest.engine != kEngineName) {
    return Error::failed_precondition(
        fmt::format("template {} was built by the {} engine, not {}", dir, manifest.engine, kEngineName));
  }
  KILN_TRY(snapshot::state_file_path(dir, manifest, kStateRole));
  KILN_TRY(snapshot::state_file_path(dir, manifest, kMemoryRole));
  return manifest;
}

Result<PreparedRestore> prepare_fork(const std::string& template_dir) {
  snapshot::Manifest manifest = KILN_TRY(read_template_manifest(template_dir));
  UniqueFd file = KILN_TRY(open_state_stream(template_dir, manifest));
  return PreparedRestore{
      .manifest = std::move(manifest), .state_file = std::move(file), .ignore_shared = true};
}

Result<void> save_template_state(QmpClient& qmp, MonitorProcess& monitor, const snapshot::VmShape& shape,
                                 const std::string& key, const std::string& dir) {
  if (monitor.has_exited()) return Error::failed_precondition("the template VM is not running");
  auto started = Clock::now();
  std::string engine_version = KILN_TRY(qemu_version(qmp));
  std::string state_path = fmt::format("{}/{}", dir, kStateFileName);
  UniqueFd file(::open(state_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file) return Error::last_os_error(fmt::format("create {}", state_path));
  uint64_t state_bytes = KILN_TRY(write_state(qmp, monitor, file.get(), true));
  file.reset();
  KILN_TRY(end_monitor(qmp, monitor));
  // QEMU is gone: the memory file is final. Make it durable and record what it must stay.
  std::string memory_path = fmt::format("{}/{}", dir, kMemoryFileName);
  UniqueFd memory(::open(memory_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!memory) return Error::last_os_error(fmt::format("open {}", memory_path));
  if (::fsync(memory.get()) != 0) return Error::last_os_error(fmt::format("fsync {}", memory_path));
  struct stat st {};
  if (::fstat(memory.get(), &st) != 0) return Error::last_os_error(fmt::format("stat {}", memory_path));
  std::string hash = KILN_TRY(sha256_file_hex(memory_path));
  snapshot::Manifest manifest{
      .engine = std::string(kEngineName),
      .engine_version = engine_version,
      .created_at = now_rfc3339(),
      .role = std::string(snapshot::kRoleTemplate),
      .template_key = key,
      .vm = shape,
      .files = {{std::string(kStateRole), {std::string(kStateFileName), state_bytes}},
                {std::string(kMemoryRole),
                 {std::string(kMemoryFileName), static_cast<uint64_t>(st.st_size), std::move(hash)}}}};
  KILN_TRY(snapshot::write_manifest(dir, manifest));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log::info("VM template saved", {{"dir", dir}, {"state_bytes", state_bytes}, {"ms", elapsed.count()}});
  return ok();
}

Result<void> save_running(QmpClient& qmp, MonitorProcess& monitor, const snapshot::VmShape& shape,
                          const RunningSave& how, const std::string& dir, int ram,
                          const std::function<Result<void>()>& while_paused) {
  if (monitor.has_exited()) return Error::failed_precondition("the VM is not running");
  KILN_TRY(require_empty_directory(dir));
  std::string engine_version = KILN_TRY(qemu_version(qmp));
  Json status = KILN_TRY(qmp.execute("query-status"));
  bool was_running = status.value("running", false);
  auto started = Clock::now();
  KILN_TRY(qmp.execute("stop"));
  auto paused_at = Clock::now();
  uint64_t state_bytes = 0;
  RamCopyStats ram_stats;
  std::string memory_path = fmt::format("{}/{}", dir, kMemoryFileName);
  auto write_manifest = [&]() -> Result<void> {
    snapshot::Manifest manifest{
        .engine = std::string(kEngineName),
        .engine_version = engine_version,
        .created_at = now_rfc3339(),
        .role = std::string(how.role),
        .template_key = how.key,
        .vm = shape,
        .files = {{std::string(kStateRole), {std::string(kStateFileName), state_bytes}},
                  {std::string(kMemoryRole), {std::string(kMemoryFileName), ram_stats.bytes}}}};
    return snapshot::write_manifest(dir, manifest);
  };
  auto saved = [&]() -> Result<void> {
    KILN_TRY_CONTEXT(while_paused(), "while the VM was paused");
    std::string state_path = fmt::format("{}/{}", dir, kStateFileName);
    UniqueFd file(::open(state_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!file) return Error::last_os_error(fmt::format("create {}", state_path));
    state_bytes = KILN_TRY(write_state(qmp, monitor, file.get(), true));
    ram_stats = KILN_TRY(copy_ram_sparse(ram, memory_path));
    if (how.end_monitor) {
      // A suspended VM's memory must outlive a host crash, as the streamed state does (a clone's lives as
      // long as the clone), and the suspend is complete only with its manifest: both before QEMU ends, so
      // that a failure still resumes the guest.
      UniqueFd memory(::open(memory_path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!memory || ::fsync(memory.get()) != 0)
        return Error::last_os_error(fmt::format("fsync {}", memory_path));
      KILN_TRY(write_manifest());
    }
    return ok();
  }();
  if (saved && how.end_monitor) {
    // The snapshot is complete and durable: the guest never runs again in this QEMU (its disks must not
    // change after the memory that caches them was saved).
    KILN_TRY(end_monitor(qmp, monitor));
  } else if (was_running && !monitor.has_exited()) {
    // The guest runs again as soon as its memory and devices are copied; a clone's manifest needs neither.
    if (auto resumed = qmp.execute("cont"); !resumed) {
      if (saved) return resumed.error().with_context("resume the VM after saving it");
      log::warn("could not resume the VM after a failed save", {{"error", resumed.error().message()}});
    }
  }
  auto paused_for = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - paused_at);
  if (!saved) return saved.error();
  if (!how.end_monitor) KILN_TRY(write_manifest());
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log::info(how.end_monitor ? "VM suspended into a memory file" : "running VM saved as a template",
            {{"dir", dir},
             {"state_bytes", state_bytes},
             {"ram_data_bytes", ram_stats.data_bytes},
             {"ram_scanned_bytes", ram_stats.scanned_bytes},
             {"paused_ms", paused_for.count()},
             {"ms", elapsed.count()}});
  return ok();
}

Result<void> load_vm_state(QmpClient& qmp, MonitorProcess& monitor, PreparedRestore restore) {
  auto started = Clock::now();
  std::string running_version = KILN_TRY(qemu_version(qmp));
  if (running_version != restore.manifest.engine_version) {
    // Usually fine (QEMU keeps streams compatible for a machine type); if not, loading fails clearly.
    log::warn("restoring a VM saved by another QEMU version",
              {{"saved_by", restore.manifest.engine_version}, {"running", running_version}});
  }
  KILN_TRY(qmp.pass_fd(kFdName, restore.state_file.get()));
  restore.state_file.reset();  // QEMU holds its own copy
  KILN_TRY(set_capabilities(qmp, restore.ignore_shared));
  // No self-announcements after the load. For a VM that moved to another host they tell the switches where
  // its MAC now is; here the VM stays on the same bridge, and QEMU's default (5 rounds from the resume on)
  // sent RARPs for the NIC's QEMU-level MAC (52:54:00:12:34:56 for every clone) to every container on the
  // bridge, and made a clone's guest announce its template's MAC during CLONE_INIT, while the agent set
  // the clone's own (measured: 13 packets from a new clone's tap in its first 2 s; 3 without).
  KILN_TRY(qmp.execute("migrate-set-parameters", Json{{"announce-rounds", 0}}));
  KILN_TRY(qmp.execute("migrate-incoming", Json{{"uri", fmt::format("fd:{}", kFdName)}}));
  KILN_TRY(wait_for_migration(qmp, monitor, "restore the VM's state"));
  // The VM was stopped when it was saved, so it comes back paused.
  KILN_TRY(qmp.execute("cont"));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log::debug("VM state restored", {{"ms", elapsed.count()}});
  return ok();
}

}  // namespace kiln::engine::qemu

#include "engine/qemu/qemu_engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "engine/accelerator.h"
#include "engine/qemu/qemu_vm.h"

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

// Loads a snapshot into a QEMU started with -incoming defer. A QEMU that could not load it is not left
// behind, whatever the VM's die_with_launcher.
Result<void> restore_into(QemuVm& vm, PreparedRestore restore, const VmPaths& paths) {
  auto loaded = vm.load_state(std::move(restore));
  if (loaded) return ok();
  if (auto killed = vm.kill(); !killed) {
    log::warn("could not kill QEMU after a failed restore", {{"error", killed.error().message()}});
  }
  // QEMU 7.2 exits when the stream is bad and says why on stderr; that beats "QEMU exited".
  std::string reason = last_line_of(paths.monitor_log);
  if (reason.empty() || loaded.error().category() != ErrorCategory::kUnavailable) return loaded.error();
  return Error::failed_precondition(fmt::format("restore the VM's state: {}", reason));
}

}  // namespace

Result<std::unique_ptr<QemuEngine>> QemuEngine::create(std::string qemu_binary, Accelerator accelerator) {
  std::string binary = KILN_TRY(find_on_path(qemu_binary.empty() ? "qemu-system-x86_64" : qemu_binary));
  HostFacts host{.accelerator = accelerator, .tsc_khz = host_tsc_khz()};
  return std::unique_ptr<QemuEngine>(new QemuEngine(std::move(binary), host));  // NOLINT: private constructor
}

Result<std::unique_ptr<VmInstance>> QemuEngine::launch(const VmSpec& spec) {
  KILN_TRY(require_readable(spec.kernel, "kernel"));
  if (!spec.initrd.empty()) KILN_TRY(require_readable(spec.initrd, "initramfs"));
  for (const auto& disk : spec.disks) KILN_TRY(require_readable(disk.path, "disk"));
  if (spec.root_disk >= 0 && static_cast<size_t>(spec.root_disk) >= spec.disks.size()) {
    return Error::invalid_argument(
        fmt::format("root disk {} is not one of the VM's {} disks", spec.root_disk, spec.disks.size()));
  }
  for (const auto& share : spec.shares) KILN_TRY(require_directory(share.host_path, share.tag));
  if (spec.cpus == 0) return Error::invalid_argument("a VM needs at least one CPU");
  // A snapshot is checked against the spec before a QEMU is started for it.
  std::optional<PreparedRestore> restore;
  if (!spec.restore_from.empty()) restore = KILN_TRY(prepare_restore(spec));

  VmPaths paths = paths_for(spec.runtime_dir);
  UniqueFd monitor_log(::open(paths.monitor_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!monitor_log) return Error::last_os_error(fmt::format("create {}", paths.monitor_log));

  std::vector<std::string> args = qemu_arguments(binary_, spec, host_);
  log::debug("launching QEMU", {{"vm", spec.name}, {"accel", to_string(host_.accelerator)}});
  ChildProcess process = KILN_TRY(ChildProcess::spawn({.argv = args,
                                                       .stdin_mode = Stdio::kNull,
                                                       .stdout_fd = monitor_log.get(),
                                                       .stderr_fd = monitor_log.get(),
                                                       .new_session = true,
                                                       .kill_with_parent = spec.die_with_launcher}));
  auto qmp = QmpClient::connect(paths.qmp_socket, process.pidfd(), kMonitorTimeout);
  if (!qmp) {
    if (auto exited = process.try_wait(); exited && *exited) {
      std::string reason = last_line_of(paths.monitor_log);
      return Error::unavailable(
          fmt::format("QEMU failed to start: {}", reason.empty() ? (*exited)->describe() : reason));
    }
    return qmp.error();
  }
  auto monitor = MonitorProcess::spawned(std::move(process), !spec.die_with_launcher);
  auto vm = std::make_unique<QemuVm>(std::move(monitor), std::move(*qmp), paths);
  vm->set_shape(snapshot::shape_of(spec, guest_cmdline(spec, host_)));
  if (restore) KILN_TRY(restore_into(*vm, std::move(*restore), paths));
  return std::unique_ptr<VmInstance>(std::move(vm));
}

Result<std::unique_ptr<VmInstance>> QemuEngine::adopt(const VmSpec& spec, pid_t monitor_pid) {
  VmPaths paths = paths_for(spec.runtime_dir);
  // The QMP socket path is unique per VM and is on QEMU's command line: it identifies the process.
  MonitorProcess monitor = KILN_TRY(MonitorProcess::adopt(monitor_pid, paths.qmp_socket));
  auto qmp =
      KILN_TRY_CONTEXT(QmpClient::connect(paths.qmp_socket, monitor.exit_fd(), std::chrono::seconds(5)),
                       "reconnect to the VM's monitor");
  auto vm = std::make_unique<QemuVm>(std::move(monitor), std::move(qmp), paths);
  vm->set_shape(snapshot::shape_of(spec, guest_cmdline(spec, host_)));
  return std::unique_ptr<VmInstance>(std::move(vm));
}

}  // namespace kiln::engine::qemu

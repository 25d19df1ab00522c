// ContainerManager: the main process's life. start -> launch (the VM, the process, its relay thread) ->
// on_main_exit (on the relay thread) -> restart policy or auto-remove; stop, kill, pause, wait.
#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "agent/protocol/linux_capabilities.h"
#include "common/log.h"
#include "common/rfc3339.h"
#include "common/stdcopy.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/container_runtime.h"
#include "daemon/containers/signals.h"
#include "daemon/networks/container_networking.h"

namespace kiln::daemon::containers {
namespace {

constexpr auto kDefaultStopTimeout = std::chrono::seconds(10);
constexpr auto kKillWait = std::chrono::seconds(10);
// moby's restartmanager: 100 ms doubling to a minute; reset once a run lasted 10 s.
constexpr auto kFirstRestartDelay = std::chrono::milliseconds(100);
constexpr auto kMaxRestartDelay = std::chrono::minutes(1);
constexpr auto kRunLongEnoughToResetBackoff = std::chrono::seconds(10);

bool is_live(ContainerState state) {
  return state == ContainerState::kRunning || state == ContainerState::kPaused;
}

Error not_running(const ContainerRecord& container) {
  return Error::failed_precondition(fmt::format("Container {} is not running", container.id));
}

// dockerd's exit codes for a main process that never started (daemon/start.go): 127 command not found,
// 126 not invocable, 128 anything else; the message carries the words the docker CLI maps to its own exit
// code (cli/command/container/run.go: "executable file not found", "permission denied").
std::pair<int, Error> start_failure(const Error& error, const std::string& command) {
  std::string message = error.message();
  if (error.category() == ErrorCategory::kNotFound) {
    // runc's words: a bare name was searched in $PATH, a path was looked at directly.
    std::string why = command.find('/') == std::string::npos
                          ? "executable file not found in $PATH"
                          : fmt::format("stat {}: no such file or directory", command);
    return {127,
            Error::invalid_argument(fmt::format(
                "failed to create task for container: unable to start container process: exec: \"{}\": {}: "
                "unknown",
                command, why))};
  }

  bool denied = error.category() == ErrorCategory::kPermissionDenied ||
                message.find("ermission denied") != std::string::npos ||
                message.find("s a directory") != std::string::npos;
  if (denied) {
    return {126, Error::invalid_argument(fmt::format(
                     "failed to create task for container: unable to start container process: exec: \"{}\": "
                     "permission denied: unknown",
                     command))};
  }
  return {128, Error(error.category() == ErrorCategory::kInvalidArgument ? ErrorCategory::kInvalidArgument
                                                                         : ErrorCategory::kInternal,
                     fmt::format("failed to create task for container: unable to start container process: {}",
                                 message))};
}

// /etc/hostname, /etc/hosts and /etc/resolv.conf as Docker gives every container, from the addresses its
// VM holds (daemon/networks/container_networking.h writes them as dockerd does).
std::map<std::string, std::string> container_etc_files(const ContainerRecord& container, const VmRecord& vm,
                                                       const std::string& host_gateway_ip,
                                                       const std::vector<std::string>& link_lines) {
  return {{"etc/hostname", container.config.hostname + "\n"},
          {"etc/hosts", networks::container_hosts_file(container, vm.nics, host_gateway_ip, link_lines)},
          {"etc/resolv.conf", networks::container_resolv_conf(container, vm.nics)}};
}

}  // namespace

uint64_t ContainerManager::exits_seen(Runtime& rt) {
  std::lock_guard guard(rt.state_mutex);
  return rt.exits;
}

bool ContainerManager::wait_for_exit_after(Runtime& rt, uint64_t exits, std::chrono::milliseconds timeout,
                                           const std::function<bool()>& cancelled) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(rt.state_mutex);
  while (rt.exits <= exits && !rt.removed) {
    if (std::chrono::steady_clock::now() >= deadline || stopping_) return false;
    if (cancelled && cancelled()) return false;
    rt.state_changed.wait_for(lock, std::chrono::milliseconds(200));
  }
  return true;
}

std::optional<VmNic> ContainerManager::running_nic(const ContainerRecord& container,
                                                   const std::string& network_id,
                                                   const std::string& network_name) {
  if (container.state != ContainerState::kRunning && container.state != ContainerState::kPaused) return {};
  auto vm = vms_.inspect(container.vm_id);
  if (!vm) return {};
  for (const VmNic& nic : vm->nics) {
    if ((!network_id.empty() && nic.network_id == network_id) || nic.network_name == network_name) return nic;
  }
  return {};
}

Result<std::optional<networks::LinkedContainer>> ContainerManager::linked_container(
    const ContainerRecord& container, const ContainerLink& link) {
  auto child = KILN_TRY(store_.get(link.container));
  if (!child) return std::optional<networks::LinkedContainer>();
  auto nic = running_nic(*child, "", std::string(kDefaultNetwork));
  if (!nic) {
    return Error::failed_precondition(fmt::format("Cannot link to a non running container: /{} AS /{}/{}",
                                                  child->name, container.name, link.alias));
  }
  networks::LinkedContainer linked{.name = child->name, .ipv4 = nic->ipv4, .env = child->config.env};
  if (const Json* exposed = child->raw_config.is_object() && child->raw_config.contains("ExposedPorts")
                                ? &child->raw_config["ExposedPorts"]
                                : nullptr;
      exposed != nullptr && exposed->is_object()) {
    for (const auto& [port, unused] : exposed->items()) linked.ports.push_back(port);
  }
  return std::optional(std::move(linked));
}

Result<void> ContainerManager::launch(Runtime& rt, ContainerRecord& container, bool& vm_failed) {
  const ContainerConfig& config = container.config;
  // Legacy links first, as dockerd: each linked container must be running.
  std::vector<std::string> link_lines;
  container.link_env.clear();
  for (const ContainerLink& link : container.host_config.links) {
    if (link.name.empty()) continue;  // on a user-defined network: not used, as dockerd
    auto child = linked_container(container, link);
    if (!child) return child.error();
    if (!*child) continue;  // removed since: the link went with it
    auto env = networks::link_environment(container.name, link.alias, **child);
    container.link_env.insert(container.link_env.end(), env.begin(), env.end());
    link_lines.push_back(networks::link_hosts_line(link.alias, **child));
  }
  // Links on user-defined networks (docker-compose's `links:`): the alias names the linked container's
  // address on that network, for this container alone; one not running there is left out, as Docker's
  // resolver would not answer it either.
  for (const NetworkEndpointConfig& endpoint : container.networks) {
    for (const std::string& spec : endpoint.links) {
      auto link = networks::parse_link(spec);
      if (!link) continue;
      auto child = store_.resolve(link->container);
      if (!child) continue;
      if (auto nic = running_nic(*child, endpoint.network_id, endpoint.network))
        link_lines.push_back(
            networks::link_hosts_line(link->alias, {.name = child->name, .ipv4 = nic->ipv4}));
    }
  }
  agent::ProcessSpec spec;
  spec.argv = config.entrypoint;
  spec.argv.insert(spec.argv.end(), config.cmd.begin(), config.cmd.end());
  spec.env = process_environment(container);
  spec.cwd = config.working_dir;
  spec.tty = config.tty;
  if (config.console_rows > 0 && config.console_cols > 0)
    spec.size = {.rows = config.console_rows, .cols = config.console_cols};
  // Kept by the agent across a kilnd restart, which takes it over again (recover()).
  spec.keep_on_disconnect = true;
  spec.container = agent::ContainerSpec{.root = std::string(kContainerRootInGuest),
                                        .hostname = config.hostname,
                                        .capabilities = KILN_TRY(agent::container_capabilities(
                                            container.host_config.cap_add, container.host_config.cap_drop)),
                                        .privileged = container.host_config.privileged,
                                        .read_only_root = container.host_config.read_only_root,
                                        .user = config.user,
                                        .init = container.host_config.init};

  // `docker run -v /missing:/x` makes /missing on the host, as dockerd does (`--mount` refused it at create).
  for (const auto& mount : container.host_config.mounts) {
    if (mount.type != MountPoint::Type::kBind || !mount.create_source) continue;
    std::error_code error;
    if (!std::filesystem::exists(mount.source, error))
      std::filesystem::create_directories(mount.source, error);
    if (error)
      return Error::internal(
          fmt::format("error while creating mount source path '{}': {}", mount.source, error.message()));
  }

  // The VM joins the container's networks as they are now (connect and disconnect change them while it is
  // stopped) and publishes its ports.
  vm_failed = true;
  KILN_TRY(vms_.set_networking(container.vm_id, networks::vm_network_requests(container), container.ports,
                               container.id));
  // Unprefixed: a port in use or a missing network reads as dockerd's ("driver failed programming external
  // connectivity on endpoint ...", "network x not found").
  VmRecord vm = KILN_TRY(vms_.start(container.vm_id, container.id));
  vm_failed = false;
  // Written once the VM holds its addresses.
  spec.container->files = container_etc_files(container, vm, config_.host_gateway_ip, link_lines);

  // Output is captured from the first byte: the log is open before the process exists.
  RunIo run_io = KILN_TRY(open_run_io(container));
  auto started = vms_.exec(container.vm_id, spec, run_io.io);
  if (!started) {
    (void)vms_.stop(container.vm_id, config_.vm_stop_grace);
    return started.error();
  }
  agent::ExecHandle handle = *started;
  container.state = ContainerState::kRunning;
  container.pid = vm.monitor_pid;
  container.started_at = now_rfc3339(TimePrecision::kNanos);
  container.exit_code = 0;
  container.error.clear();
  container.oom_killed = false;
  container.main_process = handle.id();
  KILN_TRY(save(container));
  run_relay(rt, container, handle, run_io.relay_end, run_io.log);
  publish(container, "start");
  log::info("container started", {{"container", container.name}, {"pid", vm.monitor_pid}});
  return ok();
}

Result<ContainerManager::RunIo> ContainerManager::open_run_io(const ContainerRecord& container) {
  RunIo run;
  if (container.host_config.log_config.type != "none") {
    auto options = KILN_TRY(parse_json_file_log_options(container.host_config.log_config.options));
    run.log = KILN_TRY(JsonFileLogWriter::create(log_path(container.id), options));
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return Error::last_os_error("socketpair for the container's stdio");
  run.relay_end = std::make_shared<UniqueFd>(pair[0]);
  run.io = agent::ExecIo{.client = UniqueFd(pair[1]),
                         .tty = container.config.tty,
                         .attach_stdin = container.config.open_stdin,
                         .attach_stdout = true,
                         .attach_stderr = true};
  return run;
}

void ContainerManager::run_relay(Runtime& rt, const ContainerRecord& container, agent::ExecHandle handle,
                                 std::shared_ptr<UniqueFd> relay_end,
                                 std::shared_ptr<JsonFileLogWriter> log) {
  uint64_t run = ++rt.run;
  rt.main = handle;
  rt.log = log;
  rt.started = std::chrono::steady_clock::now();
  rt.io.begin_run(relay_end, container.config.open_stdin);
  {
    std::lock_guard guard(threads_mutex_);
    ++threads_;
  }
  std::shared_ptr<Runtime> shared = runtime(container.id);
  std::thread([this, shared, id = container.id, run, relay_end, tty = container.config.tty, log, handle] {
    stdcopy::Demuxer demuxer;
    auto deliver = [&](int stream, std::string_view payload) {
      if (log) {
        auto written =
            log->write(stream == stdcopy::kStderr ? LogStream::kStderr : LogStream::kStdout, payload);
        if (!written)
          log::warn("container log write failed", {{"id", id}, {"error", written.error().message()}});
      }
      shared->io.broadcast(stream, payload);
      return true;
    };
    std::string buffer(64 * 1024, '\0');
    for (;;) {
      ssize_t n = ::read(relay_end->get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::string_view data(buffer.data(), static_cast<size_t>(n));
      if (tty) {
        deliver(stdcopy::kStdout, data);
      } else {
        demuxer.feed(data, deliver);
      }
    }
    // At kilnd shutdown the agent channel closes under a live process, which the agent keeps: no exit.
    if (!stopping_) on_main_exit(id, run, handle.wait(std::chrono::seconds(30)));
    std::lock_guard guard(threads_mutex_);
    --threads_;
    threads_done_.notify_all();
  }).detach();
}

Result<void> ContainerManager::start_locked(Runtime& rt, ContainerRecord& container) {
  container.stopped_by_user = false;
  bool vm_failed = false;
  auto launched = launch(rt, container, vm_failed);
  if (launched) return ok();
  std::string command = container.config.entrypoint.empty()
                            ? (container.config.cmd.empty() ? "" : container.config.cmd.front())
                            : container.config.entrypoint.front();
  auto [code, error] =
      vm_failed ? std::pair<int, Error>{128, launched.error()} : start_failure(launched.error(), command);
  if (container.state != ContainerState::kCreated) container.state = ContainerState::kExited;
  container.exit_code = code;
  container.error = error.message();
  container.pid = 0;
  container.finished_at = now_rfc3339(TimePrecision::kNanos);
  (void)save(container);
  {
    std::lock_guard guard(rt.state_mutex);
    ++rt.exits;
    rt.last_exit_code = code;
  }
  rt.state_changed.notify_all();
  rt.io.end_of_run();
  if (container.host_config.auto_remove) (void)remove_locked(rt, container, true);
  return error;
}

Result<bool> ContainerManager::start(const std::string& reference) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  if (is_live(container.state)) return false;
  if (rt->removing || container.state == ContainerState::kRemoving)
    return Error::failed_precondition(
        fmt::format("container {} is marked for removal and cannot be started", container.id));
  KILN_TRY(start_locked(*rt, container));
  return true;
}

void ContainerManager::on_main_exit(const std::string& id, uint64_t run, const Result<ExitStatus>& status) {
  auto rt = runtime(id);
  std::lock_guard guard(rt->lock);
  if (rt->run != run) return;
  auto loaded = load(*rt, id);
  if (!loaded) return;
  ContainerRecord container = std::move(*loaded);
  // Without a status the agent channel went (the VM was stopped or killed under the container): as killed.
  int code = status ? status->shell_code() : 128 + SIGKILL;
  rt->main.reset();
  if (rt->log) (void)rt->log->close();
  rt->log.reset();
  rt->io.end_of_run();
  const auto& policy = container.host_config.restart_policy;
  bool restart = false;
  if (!rt->removing && !container.stopped_by_user && !stopping_) {
    switch (policy.kind) {
      case RestartPolicy::Kind::kAlways:
      case RestartPolicy::Kind::kUnlessStopped:
        restart = true;
        break;
      case RestartPolicy::Kind::kOnFailure:
        restart = code != 0 &&
                  (policy.maximum_retry_count == 0 || container.restart_count < policy.maximum_retry_count);
        break;
      case RestartPolicy::Kind::kNo:
        break;
    }
  }
  // The process is gone; the guest syncs and powers off, leaving the writable layer clean. A --rm container
  // that is not restarted loses its layer next, and its mounts' writes are on the host already (9p without a
  // cache): its VM is switched off at once instead.
  bool discarded = container.host_config.auto_remove && !restart;
  auto stopped = discarded ? vms_.kill(container.vm_id) : vms_.stop(container.vm_id, config_.vm_stop_grace);
  // (A VM that is already off cannot be killed, and need not be.)
  bool already_off =
      discarded && !stopped && stopped.error().category() == ErrorCategory::kFailedPrecondition;
  if (!stopped && !already_off)
    log::warn("container VM did not stop", {{"id", id}, {"error", stopped.error().message()}});

  container.state = ContainerState::kExited;
  container.exit_code = code;
  container.pid = 0;
  container.main_process = 0;
  container.finished_at = now_rfc3339(TimePrecision::kNanos);
  if (restart) container.state = ContainerState::kRestarting;
  if (auto saved = save(container); !saved)
    log::error("could not record a container's exit", {{"id", id}, {"error", saved.error().message()}});
  publish(container, "die", {{"exitCode", std::to_string(code)}});
  log::info("container exited", {{"container", container.name}, {"code", code}});
  {
    std::lock_guard state_guard(rt->state_mutex);
    ++rt->exits;
    rt->last_exit_code = code;
  }
  rt->state_changed.notify_all();
  if (restart) {
    auto ran = std::chrono::steady_clock::now() - rt->started;
    if (ran >= kRunLongEnoughToResetBackoff || rt->restart_delay.count() == 0) {
      rt->restart_delay = kFirstRestartDelay;
    } else {
      rt->restart_delay = std::min<std::chrono::milliseconds>(rt->restart_delay * 2, kMaxRestartDelay);
    }
    schedule_restart(id, run, rt->restart_delay);
  } else if (container.host_config.auto_remove && !rt->removing) {
    if (auto removed = remove_locked(*rt, container, true); !removed)
      log::warn("could not auto-remove a container", {{"id", id}, {"error", removed.error().message()}});
  }
}

void ContainerManager::schedule_restart(const std::string& id, uint64_t run,
                                        std::chrono::milliseconds delay) {
  {
    std::lock_guard guard(threads_mutex_);
    ++threads_;
  }
  std::thread([this, id, run, delay] {
    auto deadline = std::chrono::steady_clock::now() + delay;
    while (!stopping_ && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(delay, std::chrono::milliseconds(50)));
    if (!stopping_) {
      auto rt = runtime(id);
      std::lock_guard guard(rt->lock);
      auto container = load(*rt, id);
      // A stop, start or removal since the exit cancels this restart.
      if (container && rt->run == run && container->state == ContainerState::kRestarting && !rt->removing) {
        ++container->restart_count;
        if (auto started = start_locked(*rt, *container); !started) {
          log::warn("container restart failed", {{"id", id}, {"error", started.error().message()}});
        } else {
          publish(*container, "restart");
        }
      }
    }
    std::lock_guard guard(threads_mutex_);
    --threads_;
    threads_done_.notify_all();
  }).detach();
}

Result<void> ContainerManager::stop_process(Runtime& rt, const std::string& id, int signal,
                                            std::chrono::milliseconds timeout) {
  std::optional<agent::ExecHandle> handle;
  std::string vm_id;
  uint64_t exits = exits_seen(rt);
  {
    std::lock_guard guard(rt.lock);
    handle = rt.main;
    auto container = load(rt, id);
    if (container) vm_id = container->vm_id;
  }
  if (!handle) return ok();
  // To the main process itself, as dockerd signals the container's init (PID 1 semantics apply).
  (void)handle->signal(signal);
  bool forever = timeout.count() < 0;
  if (wait_for_exit_after(rt, exits, forever ? std::chrono::hours(24 * 365) : timeout)) return ok();
  if (signal != SIGKILL) {
    (void)handle->signal(SIGKILL);
    if (wait_for_exit_after(rt, exits, kKillWait)) return ok();
  }
  // The guest does not answer: take its VM down; the relay then sees the channel go and records the exit.
  log::warn("container did not die on SIGKILL; killing its VM", {{"id", id}});
  if (!vm_id.empty()) (void)vms_.kill(vm_id);
  if (wait_for_exit_after(rt, exits, kKillWait)) return ok();
  return Error::timeout(fmt::format("container {} did not stop", id));
}

Result<bool> ContainerManager::stop(const std::string& reference, std::optional<int> timeout,
                                    std::optional<int> signal) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  int stop_signal = SIGTERM;
  std::chrono::milliseconds grace = kDefaultStopTimeout;
  ContainerRecord container;
  {
    std::lock_guard guard(rt->lock);
    container = KILN_TRY(load(*rt, found.id));
    if (container.state == ContainerState::kRestarting) {
      // Between runs: the pending restart is cancelled and it stays exited.
      container.state = ContainerState::kExited;
      container.stopped_by_user = true;
      KILN_TRY(save(container));
      publish(container, "stop");
      return true;
    }
    if (!is_live(container.state) || !rt->main) return false;
    container.stopped_by_user = true;
    KILN_TRY(save(container));
    if (container.state == ContainerState::kPaused) {
      // A paused guest cannot deliver the signal: it runs again first, as dockerd unpauses to stop.
      KILN_TRY(vms_.resume(container.vm_id));
      container.state = ContainerState::kRunning;
      KILN_TRY(save(container));
    }
    if (auto configured = parse_signal(container.config.stop_signal)) stop_signal = *configured;
    if (container.config.stop_timeout) grace = std::chrono::seconds(*container.config.stop_timeout);
  }
  if (signal) stop_signal = *signal;
  if (timeout) grace = std::chrono::seconds(*timeout);
  KILN_TRY(stop_process(*rt, found.id, stop_signal, grace));
  publish(container, "stop");
  return true;
}

Result<void> ContainerManager::kill(const std::string& reference, int signal) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::optional<agent::ExecHandle> handle;
  ContainerRecord container;
  uint64_t exits = exits_seen(*rt);
  {
    std::lock_guard guard(rt->lock);
    container = KILN_TRY(load(*rt, found.id));
    if (!is_live(container.state) || !rt->main) return not_running(container);
    if (signal == SIGKILL || signal == SIGTERM || signal == SIGINT) container.stopped_by_user = true;
    if (container.state == ContainerState::kPaused) {
      KILN_TRY(vms_.resume(container.vm_id));
      container.state = ContainerState::kRunning;
    }
    KILN_TRY(save(container));
    handle = rt->main;
  }
  KILN_TRY(handle->signal(signal));
  publish(container, "kill", {{"signal", std::to_string(signal)}});
  // dockerd returns from a SIGKILL once the container is down.
  if (signal == SIGKILL && !wait_for_exit_after(*rt, exits, kKillWait)) {
    (void)vms_.kill(container.vm_id);
    (void)wait_for_exit_after(*rt, exits, kKillWait);
  }
  return ok();
}

Result<void> ContainerManager::restart(const std::string& reference, std::optional<int> timeout) {
  auto found = KILN_TRY(store_.resolve(reference));
  KILN_TRY(stop(found.id, timeout, std::nullopt));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  if (!is_live(container.state)) KILN_TRY(start_locked(*rt, container));
  publish(container, "restart");
  return ok();
}

Result<void> ContainerManager::pause(const std::string& reference) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  if (container.state == ContainerState::kPaused)
    return Error::failed_precondition(fmt::format("Container {} is already paused", container.id));
  if (container.state != ContainerState::kRunning) return not_running(container);
  KILN_TRY(vms_.pause(container.vm_id));
  container.state = ContainerState::kPaused;
  KILN_TRY(save(container));
  publish(container, "pause");
  return ok();
}

Result<void> ContainerManager::unpause(const std::string& reference) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  if (container.state != ContainerState::kPaused)
    return Error::failed_precondition(fmt::format("Container {} is not paused", container.id));
  KILN_TRY(vms_.resume(container.vm_id));
  container.state = ContainerState::kRunning;
  KILN_TRY(save(container));
  publish(container, "unpause");
  return ok();
}

Result<void> ContainerManager::resize(const std::string& reference, uint16_t rows, uint16_t cols) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  std::lock_guard guard(rt->lock);
  auto container = KILN_TRY(load(*rt, found.id));
  if (!is_live(container.state) || !rt->main) return not_running(container);
  return rt->main->resize({.rows = rows, .cols = cols});
}

Result<int> ContainerManager::wait(const std::string& reference, WaitCondition condition,
                                   const std::function<bool()>& cancelled) {
  auto found = KILN_TRY(store_.resolve(reference));
  auto rt = runtime(found.id);
  // The count is read before the state: an exit recorded after this read is always seen as a new exit.
  uint64_t exits = exits_seen(*rt);
  auto container = KILN_TRY(store_.resolve(found.id));
  bool live = is_live(container.state) || container.state == ContainerState::kRestarting;
  if (condition == WaitCondition::kNotRunning && !live) return container.exit_code;
  std::unique_lock lock(rt->state_mutex);
  for (;;) {
    bool done = condition == WaitCondition::kRemoved ? rt->removed : (rt->exits > exits || rt->removed);
    if (done) return rt->removed && rt->exits == exits ? container.exit_code : rt->last_exit_code;
    if (stopping_) return Error::unavailable("kilnd is shutting down");
    if (cancelled && cancelled()) return Error::cancelled("the client went away");
    rt->state_changed.wait_for(lock, std::chrono::milliseconds(200));
  }
}

void ContainerManager::shutdown() {
  if (stopping_.exchange(true)) return;
  std::vector<std::shared_ptr<Runtime>> all;
  {
    std::lock_guard guard(runtimes_mutex_);
    for (auto& [id, rt] : runtimes_) all.push_back(rt);
  }
  // Attached clients see their stream end; the containers themselves run on (the agent keeps their main
  // processes until the next kilnd takes them over), so the relays are left to end when VmManager::
  // shutdown() closes the agent channels.
  for (auto& rt : all) rt->io.end_of_run();
}

void ContainerManager::join() {
  stopping_ = true;
  std::unique_lock lock(threads_mutex_);
  threads_done_.wait_for(lock, std::chrono::seconds(10), [this] { return threads_ == 0; });
}

}  // namespace kiln::daemon::containers

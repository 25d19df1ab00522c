// ContainerManager's execs (docker exec): a process started in a running container's VM that enters the main
// process's namespaces and root (so it sees the container's processes and mounts), with the container's
// capabilities and environment. Exec records live in kilnd's memory, as dockerd's
// do, and go with their container.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/socket.h>

#include <thread>

#include "agent/protocol/linux_capabilities.h"
#include "common/log.h"
#include "common/random_id.h"
#include "common/stdcopy.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/container_runtime.h"

namespace kiln::daemon::containers {
namespace {

// Docker's wording when the exec'd command cannot start; the CLI maps it to 126/127 like a run's.
std::string exec_start_failure(const Error& error, const std::string& command) {
  if (error.category() == ErrorCategory::kNotFound) {
    return fmt::format(
        "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{}\": executable "
        "file not found in $PATH: unknown",
        command);
  }
  return fmt::format("OCI runtime exec failed: exec failed: unable to start container process: {}: unknown",
                     error.message());
}

}  // namespace

Result<std::string> ContainerManager::exec_create(const std::string& reference, ExecConfig config) {
  auto container = KILN_TRY(store_.resolve(reference));
  if (container.state == ContainerState::kPaused)
    return Error::failed_precondition(
        fmt::format("Container {} is paused, unpause the container before exec", container.id));
  if (container.state != ContainerState::kRunning)
    return Error::failed_precondition(fmt::format("Container {} is not running", container.id));
  if (config.cmd.empty()) return Error::invalid_argument("No exec command specified");
  std::string command = fmt::format("{}", fmt::join(config.cmd, " "));
  ExecRecord exec{.id = KILN_TRY(random_hex_id()), .container_id = container.id, .config = std::move(config)};
  std::string id = exec.id;
  {
    std::lock_guard guard(execs_mutex_);
    execs_[id] = std::move(exec);
  }
  publish(container, "exec_create: " + command, {{"execID", id}});
  return id;
}

Result<ExecRecord> ContainerManager::exec_inspect(const std::string& exec_id) {
  ExecRecord exec;
  {
    std::unique_lock lock(execs_mutex_);
    auto found = execs_.find(exec_id);
    if (found == execs_.end()) return Error::not_found(fmt::format("No such exec instance: {}", exec_id));
    // Started but not yet registered (the process may even have ended and its stream closed already): the
    // answer waits for the start to be recorded, so it never reads as "not running, no exit code".
    execs_changed_.wait_for(lock, std::chrono::seconds(5), [&] {
      auto current = execs_.find(exec_id);
      return current == execs_.end() || !current->second.started || current->second.handle ||
             current->second.exit_code;
    });
    found = execs_.find(exec_id);
    if (found == execs_.end()) return Error::not_found(fmt::format("No such exec instance: {}", exec_id));
    exec = found->second;
  }
  if (exec.running && exec.handle && !exec.exit_code) {
    // The docker CLI inspects an exec the moment its stream ends, and the stream ends just before the hub
    // records the exit: an attached exec gets a moment to settle, so the CLI never reads "running, 0".
    auto status = exec.handle->exit_status();
    if (!status && exec.config.attach_stdout) {
      if (auto waited = exec.handle->wait(std::chrono::seconds(1))) status = *waited;
    }
    if (status) {
      exec.running = false;
      exec.exit_code = status->shell_code();
    }
  }
  return exec;
}

Result<void> ContainerManager::exec_start(const std::string& exec_id, UniqueFd client,
                                          std::string already_read) {
  ExecRecord exec = KILN_TRY(exec_inspect(exec_id));
  {
    std::lock_guard guard(execs_mutex_);
    auto& entry = execs_[exec_id];
    if (entry.started)
      return Error::failed_precondition(fmt::format("Error: Exec command {} is already running", exec_id));
    entry.started = true;
  }
  auto container = KILN_TRY(store_.resolve(exec.container_id));
  if (container.state != ContainerState::kRunning)
    return Error::failed_precondition(fmt::format("Container {} is not running", container.id));
  uint32_t main_process = 0;
  {
    auto rt = runtime(container.id);
    std::lock_guard guard(rt->lock);
    if (!rt->main)
      return Error::failed_precondition(fmt::format("Container {} is not running", container.id));
    main_process = rt->main->id();
  }
  const ExecConfig& config = exec.config;
  agent::ProcessSpec spec;
  spec.argv = config.cmd;
  std::vector<std::string> env = process_environment(container);
  for (const auto& entry : config.env) env.push_back(entry);
  spec.env = env;
  spec.cwd = config.working_dir.empty() ? container.config.working_dir : config.working_dir;
  spec.tty = config.tty;
  if (config.console_rows > 0 && config.console_cols > 0)
    spec.size = {.rows = config.console_rows, .cols = config.console_cols};
  spec.container = agent::ContainerSpec{.root = std::string(kContainerRootInGuest),
                                        .hostname = container.config.hostname,
                                        .capabilities = KILN_TRY(agent::container_capabilities(
                                            container.host_config.cap_add, container.host_config.cap_drop)),
                                        .privileged = container.host_config.privileged || config.privileged,
                                        .read_only_root = container.host_config.read_only_root,
                                        .user = config.user.empty() ? container.config.user : config.user,
                                        .join = main_process};
  bool attached = client.valid();
  agent::ExecIo io{.client = std::move(client),
                   .tty = config.tty,
                   .attach_stdin = attached && config.attach_stdin,
                   .attach_stdout = config.attach_stdout,
                   .attach_stderr = config.attach_stderr,
                   .already_read_input = std::move(already_read)};
  int reply_fd = io.client.get();
  auto handle = vms_.exec(container.vm_id, spec, io);
  if (!handle) {
    std::string message = exec_start_failure(handle.error(), config.cmd.front());
    {
      std::lock_guard guard(execs_mutex_);
      execs_[exec_id].exit_code = handle.error().category() == ErrorCategory::kNotFound ? 127 : 126;
    }
    execs_changed_.notify_all();
    // The client already reads the stream: it sees why, as dockerd writes the error there.
    if (attached) {
      std::string text = message + "\r\n";
      std::string out = config.tty ? text : stdcopy::frame(stdcopy::kStdout, text);
      (void)::send(reply_fd, out.data(), out.size(), MSG_NOSIGNAL);
      ::shutdown(reply_fd, SHUT_RDWR);
    }
    return Error::invalid_argument(message);
  }
  {
    std::lock_guard guard(execs_mutex_);
    execs_[exec_id].running = true;
    execs_[exec_id].handle = *handle;
  }
  execs_changed_.notify_all();
  publish(container, "exec_start: " + fmt::format("{}", fmt::join(config.cmd, " ")), {{"execID", exec_id}});
  auto finish = [this, exec_id, container, handle = *handle]() {
    auto status = handle.wait();
    int code = status ? status->shell_code() : 128 + 9;
    {
      std::lock_guard guard(execs_mutex_);
      if (auto found = execs_.find(exec_id); found != execs_.end()) {
        found->second.running = false;
        found->second.exit_code = code;
      }
    }
    execs_changed_.notify_all();
    publish(container, "exec_die", {{"execID", exec_id}, {"exitCode", std::to_string(code)}});
  };
  if (attached) {
    finish();
  } else {
    {
      std::lock_guard guard(threads_mutex_);
      ++threads_;
    }
    std::thread([this, finish] {
      finish();
      std::lock_guard guard(threads_mutex_);
      --threads_;
      threads_done_.notify_all();
    }).detach();
  }
  return ok();
}

Result<void> ContainerManager::exec_resize(const std::string& exec_id, uint16_t rows, uint16_t cols) {
  auto exec = KILN_TRY(exec_inspect(exec_id));
  if (!exec.handle || !exec.running)
    return Error::failed_precondition(fmt::format("Exec {} is not running", exec_id));
  return exec.handle->resize({.rows = rows, .cols = cols});
}

Result<void> ContainerManager::read_logs(const std::string& id, const LogReadOptions& options,
                                         const std::function<bool()>& should_stop,
                                         const std::function<bool(const LogEntry&)>& deliver) {
  std::shared_ptr<const JsonFileLogWriter> live;
  if (options.follow) {
    auto rt = runtime(id);
    std::lock_guard guard(rt->lock);
    live = rt->log;
  }
  return read_json_file_log(log_path(id), options, live, should_stop, deliver);
}

}  // namespace kiln::daemon::containers

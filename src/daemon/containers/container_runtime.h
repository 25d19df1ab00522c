// ContainerManager's per-container runtime state, shared by its implementation files (not part of its
// interface). Lives from a container's first use in this kilnd until its removal.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include "agent/client/agent_hub.h"
#include "daemon/containers/container_io.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/json_file_log.h"

namespace kiln::daemon::containers {

// The main process's environment (and an exec's base): Docker's defaults with the container's Config.Env
// over them.
std::vector<std::string> process_environment(const ContainerRecord& container);

struct ContainerManager::Runtime {
  std::mutex lock;  // the container lock: serializes operations on it; taken before any VM lock
  ContainerIo io;

  // Under `lock`:
  std::optional<agent::ExecHandle> main;  // the main process of the current run
  uint64_t run = 0;                       // which start the relay's exit report belongs to
  std::shared_ptr<JsonFileLogWriter> log;
  bool removing = false;  // rm -f in progress: its exit is neither restarted nor auto-removed
  std::chrono::steady_clock::time_point started;
  std::chrono::milliseconds restart_delay{0};

  // Under `state_mutex`: what wait() watches.
  std::mutex state_mutex;
  std::condition_variable state_changed;
  uint64_t exits = 0;
  bool removed = false;
  int last_exit_code = 0;
};

}  // namespace kiln::daemon::containers

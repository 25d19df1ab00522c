// VmManager's per-VM runtime state, shared by its implementation files (not part of its interface).
// A Slot's lock serializes every operation on that VM; `running` is set while kilnd holds the VM's monitor.
#pragma once

#include <memory>
#include <mutex>

#include "agent/client/agent_hub.h"
#include "daemon/vm_manager.h"
#include "engine/engine.h"

namespace kiln::daemon {

struct VmManager::RunningVm {
  std::unique_ptr<engine::VmInstance> instance;
  std::unique_ptr<agent::AgentHub> hub;  // null while the agent is unreachable (e.g. adopted while paused)
};

struct VmManager::Slot {
  std::mutex lock;
  std::unique_ptr<RunningVm> running;
};

// kFailedPrecondition naming the container when `vm` belongs to one and the caller is not that owner.
Result<void> check_owner(const VmRecord& vm, std::string_view as_owner, std::string_view operation);

}  // namespace kiln::daemon

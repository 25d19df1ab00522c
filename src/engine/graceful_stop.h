// Stopping a VM gracefully: the guest agent is asked to kill its processes, sync and power off; if the VM
// has not ended within the grace period it is killed. Kiln's guests have no ACPI, so the agent is the only
// polite way in. Blocks the calling thread; one caller per VM.
#pragma once

#include <chrono>

#include "agent/client/agent_connection.h"
#include "engine/engine.h"

namespace kiln::engine {

enum class StopOutcome { kGraceful, kKilled };

// `agent` may be null (no connection, or the agent is unresponsive): the VM is then killed after `grace`
// unless it ends on its own first.
Result<StopOutcome> stop_gracefully(VmInstance& vm, agent::AgentConnection* agent,
                                    std::chrono::milliseconds grace);

}  // namespace kiln::engine

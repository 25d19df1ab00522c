// Runs a shell command in a test VM through its agent and collects its output: the VM tests' one way to
// look inside a guest.
#pragma once

#include <chrono>
#include <string>

#include "agent/client/agent_connection.h"
#include "common/error.h"

namespace kiln::vm_tests {

// `sh -c script` in the guest; its stdout when it exits 0, else kInternal with its output (kTimeout after
// `timeout`).
Result<std::string> run_in_guest(agent::AgentConnection& agent, const std::string& script,
                                 std::chrono::seconds timeout = std::chrono::seconds(120));

}  // namespace kiln::vm_tests

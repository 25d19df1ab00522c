// Bringing a template's guest to the point where it is saved: booted, its agent answering, then idle with
// no host session open. Engine-neutral (it only uses VmInstance and the agent protocol); kilnd's template
// pool and the tests build templates through it, so both save guests in the same state.
#pragma once

#include <chrono>
#include <functional>

#include "agent/client/agent_connection.h"
#include "common/error.h"
#include "engine/engine.h"

namespace kiln::engine {

// What the agent prints on the console when a host session is over and it waits for the next host.
inline constexpr std::string_view kAgentSessionEndedLine = "host session ended";

// Connects to the agent (HELLO), runs `prepare` on the connection if given (tests put a token in the
// guest's RAM there), closes the connection and waits until the agent says on the console that the session
// is over: a clone must wake up with no half-open session, ready for the host that forked it.
Result<void> settle_template_guest(VmInstance& vm, std::chrono::milliseconds timeout,
                                   const std::function<Result<void>(agent::AgentConnection&)>& prepare = {});

// Waits until `text` appears in the VM's console log after byte `from` (inotify: woken by each write).
Result<void> wait_for_console_text(const VmInstance& vm, std::string_view text, uint64_t from,
                                   std::chrono::milliseconds timeout);
// The console log's current size (0 when absent).
uint64_t console_size(const VmInstance& vm);

}  // namespace kiln::engine

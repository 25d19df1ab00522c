#include "guest_command.h"

#include <fmt/format.h>

namespace kiln::vm_tests {

Result<std::string> run_in_guest(agent::AgentConnection& agent, const std::string& script,
                                 std::chrono::seconds timeout) {
  agent::ProcessId id = KILN_TRY(agent.start_process({.argv = {"sh", "-c", script}}));
  std::string out, err;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto stream : {agent::OutputStream::kStdout, agent::OutputStream::kStderr}) {
      std::string_view pending = agent.pending_output(id, stream);
      (stream == agent::OutputStream::kStdout ? out : err).append(pending);
      agent.consume_output(id, stream, pending.size());
    }
    if (auto status = agent.exit_status(id)) {
      agent.release(id);
      if (!status->success()) return Error::internal(fmt::format("`{}` failed: {}{}", script, out, err));
      return out;
    }
    if (std::chrono::steady_clock::now() > deadline)
      return Error::timeout(fmt::format("guest command did not finish: {}", script));
    KILN_TRY(agent.pump(std::chrono::milliseconds(100)));
  }
}

}  // namespace kiln::vm_tests

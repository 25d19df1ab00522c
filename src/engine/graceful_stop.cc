#include "engine/graceful_stop.h"

#include "common/log.h"

namespace kiln::engine {

Result<StopOutcome> stop_gracefully(VmInstance& vm, agent::AgentConnection* agent,
                                    std::chrono::milliseconds grace) {
  auto deadline = std::chrono::steady_clock::now() + grace;
  if (agent) {
    // The agent acknowledges before it powers off; a refusal or timeout just means we fall back to a kill.
    if (auto asked = agent->shutdown(/*reboot=*/false, grace); !asked) {
      log::warn("guest agent did not take the shutdown request", {{"error", asked.error().message()}});
    }
  }
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  auto ended = KILN_TRY(vm.wait_for_exit(std::max(left, std::chrono::milliseconds(0))));
  if (ended) return StopOutcome::kGraceful;
  KILN_TRY(vm.kill());
  return StopOutcome::kKilled;
}

}  // namespace kiln::engine

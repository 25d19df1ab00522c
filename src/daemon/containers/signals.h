// Signal names as Docker takes them (--stop-signal, docker kill -s, StopSignal in images): "SIGTERM",
// "TERM", "15", "SIGRTMIN+3" (any case). Pure functions; any thread.
#pragma once

#include <string_view>

#include "common/error.h"

namespace kiln::daemon::containers {

// kInvalidArgument "Invalid signal: X" (dockerd's words) for anything else.
Result<int> parse_signal(std::string_view text);

}  // namespace kiln::daemon::containers

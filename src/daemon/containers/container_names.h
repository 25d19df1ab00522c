// Container names as Docker has them: the user's, checked against Docker's rule, or a generated
// "adjective_surname" (moby's namesgenerator shape, with a digit appended on a retry after a clash).
// Pure functions over a random source the caller owns; any thread.
#pragma once

#include <functional>
#include <random>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::daemon::containers {

// Docker's rule (moby's restrictedNamePattern): [a-zA-Z0-9][a-zA-Z0-9_.-]+, with an optional leading "/".
// Returns the name without the "/"; kInvalidArgument in dockerd's words otherwise:
// "Invalid container name (x!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed".
Result<std::string> validate_container_name(std::string_view name);

// "focused_turing". `retry` > 0 appends a digit (0-9), as moby does once a generated name is taken. Never
// "boring_wozniak" (Steve Wozniak is not boring: moby's one exception).
std::string generate_container_name(std::mt19937_64& random, int retry = 0);

// A generated name no existing container has: asks `taken` and retries, as dockerd does. kInternal after
// many clashes (only with absurdly many containers).
Result<std::string> unique_container_name(std::mt19937_64& random,
                                          const std::function<bool(const std::string&)>& taken);

}  // namespace kiln::daemon::containers

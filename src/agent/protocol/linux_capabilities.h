// Linux capabilities by name, as Docker spells them ("CAP_CHOWN", "chown", "NET_ADMIN"), and Docker's default
// set for a container. Shared by kilnd (which computes a container's set from --cap-add/--cap-drop) and the
// agent (which applies it). Pure functions; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace kiln::agent {

// Capabilities 0 .. kLinuxCapabilityCount-1 have names (linux/capability.h up to CAP_CHECKPOINT_RESTORE).
inline constexpr int kLinuxCapabilityCount = 41;

// "CAP_CHOWN" (or "chown", any case, with or without CAP_) -> 0; nullopt when unknown.
std::optional<int> capability_number(std::string_view name);
// 0 -> "CAP_CHOWN".
std::string capability_name(int number);

// What Docker gives a container unless told otherwise (moby's oci/caps/defaults.go), as "CAP_..." names.
std::vector<std::string> docker_default_capabilities();

// A container's set, as dockerd computes it (moby's caps.TweakCapabilities): the defaults, minus --cap-drop,
// plus --cap-add; "ALL" in cap_add means every capability, in cap_drop none of the defaults. Names with or
// without CAP_, any case. kInvalidArgument in dockerd's words for an unknown name
// ("invalid CapAdd: unknown capability: \"CAP_FLY\"").
Result<std::vector<std::string>> container_capabilities(const std::vector<std::string>& cap_add,
                                                        const std::vector<std::string>& cap_drop);

}  // namespace kiln::agent

// Share entries (ShareSpec::entries): the mount points an engine makes in a share's directory and the binds
// its monitor process gets in a mount namespace of its own. Engine-neutral: any monitor that serves a host
// directory to the guest carries a container's bind mounts and volumes this way.
#pragma once

#include <vector>

#include "common/child_process.h"
#include "common/error.h"
#include "engine/engine.h"

namespace kiln::engine {

// Checks every share's entries (a name that is one path component, a source that exists and is a directory
// or a regular file) and makes each entry's mount point in its share's directory: a directory, or an empty
// file for a file. Returns the binds to give the monitor (SpawnOptions::private_binds).
Result<std::vector<PrivateBind>> prepare_share_entries(const VmSpec& spec);

}  // namespace kiln::engine

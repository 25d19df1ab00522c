// Share entries (ShareSpec::entries): the mount points an engine makes in a share's directory and the binds
// its monitor process gets in a mount namespace of its own, at launch or later (ShareSpec::late_entries).
// Engine-neutral: any monitor that serves a host directory to the guest carries a container's bind mounts and
// volumes this way. Any thread.
#pragma once

#include <sys/types.h>

#include <vector>

#include "common/child_process.h"
#include "common/error.h"
#include "engine/engine.h"

namespace kiln::engine {

// The checks every entry gets: a name that is one path component, not used twice in `entries` nor by
// `existing`; a source that is an absolute path to a directory or a regular file. Touches nothing.
Result<void> check_share_entries(const std::vector<ShareEntry>& entries,
                                 const std::vector<ShareEntry>& existing = {});

// Checks `entries` and makes each one's mount point in `share`'s directory: a directory, or an empty file
// for a file. Returns the binds that put them in place.
Result<std::vector<PrivateBind>> prepare_share_entries(const ShareSpec& share,
                                                       const std::vector<ShareEntry>& entries);
// The above for every share's entries: the binds to give the monitor at launch (SpawnOptions::private_binds).
Result<std::vector<PrivateBind>> prepare_share_entries(const VmSpec& spec);

// For entries added to a running VM's `share` (its spec as launched, with the entries it has now): the share
// must have been launched with late_entries, and the names must be new to it.
Result<void> check_late_share_entries(const ShareSpec& share, const std::vector<ShareEntry>& entries);
// check_late_share_entries, then prepare_share_entries.
Result<std::vector<PrivateBind>> prepare_late_share_entries(const ShareSpec& share,
                                                            const std::vector<ShareEntry>& entries);

// Puts `binds` in place in the mount namespace of the running monitor `pid`, whose pidfd `pidfd` proves the
// pid still names it. The monitor must have a mount namespace of its own (launched with entries or
// late_entries): kFailedPrecondition if it shares this process's. All or none of the binds are made.
Result<void> bind_into_monitor(pid_t pid, int pidfd, const std::vector<PrivateBind>& binds);

}  // namespace kiln::engine

// A container's mounts as the Docker API gives them at create: HostConfig.Binds (`docker run -v`),
// HostConfig.Mounts (`--mount`), HostConfig.Tmpfs (`--tmpfs`) and Config.Volumes (anonymous volumes), checked
// with dockerd's rules and messages (moby's volume/mounts linux parser).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "daemon/containers/container_record.h"

namespace kiln::api::docker {

struct MountOptionsInput {
  std::vector<std::string> binds;              // "SRC:DST[:MODE]" or "/anonymous"
  const Json* mounts = nullptr;                // HostConfig.Mounts: an array of mount.Mount objects, or null
  std::map<std::string, std::string> tmpfs;    // destination -> options
  std::vector<std::string> anonymous_volumes;  // Config.Volumes' keys
};

// Every mount, in the order given (Mounts, then Binds, then Tmpfs, then the anonymous volumes no other mount
// covers). Volumes carry their name (empty for an anonymous one, which the container manager names) but no
// source yet; bind sources are absolute and clean. kInvalidArgument in dockerd's words for a bad spec, a
// relative or "/" destination, a bind source missing (--mount), a bad volume name, options of the wrong
// type and two mounts at one destination ("Duplicate mount point: /data").
Result<std::vector<daemon::containers::MountPoint>> parse_container_mounts(const MountOptionsInput& input);

}  // namespace kiln::api::docker

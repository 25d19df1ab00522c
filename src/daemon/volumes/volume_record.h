// VolumeRecord: one Docker named volume as kiln.db keeps it (the volumes table, schema.cc step 3). Its data
// is a host directory, <kilnd root>/volumes/<name>/_data, as dockerd's local driver keeps it; the record
// holds what that directory cannot: labels, options, whether a container made it. Plain data; any thread.
#pragma once

#include <map>
#include <string>

#include "common/error.h"
#include "common/json.h"

namespace kiln::daemon::volumes {

// The label dockerd 23 and later put on a volume made without a name (for a container's `-v /path`, an
// image's VOLUME, or `docker volume create` with no name); API 1.42's prune removes only these by default.
inline constexpr std::string_view kAnonymousLabel = "com.docker.volume.anonymous";

struct VolumeRecord {
  std::string name;
  std::string driver = "local";
  std::string created_at;  // RFC 3339 to the second, UTC, as dockerd shows CreatedAt
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;  // DriverOpts as given (always empty today: refused)
  bool anonymous = false;                      // made without a name, for a container
  std::string scope = "local";
  // dockerd keeps a map given empty ({}) apart from one not given (null), and shows each as it came: the
  // 20.10 CLI sends {} for both, later ones leave them out.
  bool labels_given = false;
  bool options_given = false;
};

Json to_storage_json(const VolumeRecord& volume);
Result<VolumeRecord> volume_from_storage_json(const Json& json);

}  // namespace kiln::daemon::volumes

// Containers in the Docker Engine API's shapes: the body of POST /containers/create parsed into the
// ContainerRecord's structs (with dockerd's rules and words for bad input), the documents of
// GET /containers/{id}/json and GET /containers/json, and the `filters` of the list. Pure translation: the
// merge with the image's configuration, ids, names in use and storage belong to the ContainerManager.
// Plain functions and values; any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/docker/filters.h"
#include "api/docker/go_json.h"
#include "common/error.h"
#include "common/json.h"
#include "daemon/containers/container_record.h"

namespace kiln::api::docker {

// ---- POST /containers/create ---------------------------------------------------------------------------

struct CreateContainerRequest {
  std::string name;  // from ?name=, checked and without the "/"; empty: the manager generates one
  daemon::containers::ContainerConfig config;  // the client's values only: image_id, hostname... unset
  daemon::containers::HostConfig host_config;
  Json raw_config = Json::object();  // the body's Config fields (everything but HostConfig/NetworkingConfig)
  Json raw_host_config = Json::object();
  Json raw_networking_config = Json::object();
  std::vector<std::string> anonymous_volumes;  // Config.Volumes' paths (also kept in raw_config)
};

// Docker's rules: unknown fields are ignored, field names match case-insensitively (Go's encoding/json),
// wrong types are kInvalidArgument in Go's words ("json: cannot unmarshal string into Go struct field
// ContainerConfigWrapper.Env of type []string"), as are dockerd's checks (Env entries, Memory >= 6MB,
// NanoCpus within `host_cpus` when nonzero, capability names, restart policy, AutoRemove with a restart
// policy, log driver: json-file and none only). A missing Image is refused: Kiln needs an image for the root
// filesystem. Cmd/Entrypoint/CapAdd/CapDrop take a string or a list (moby's strslice).
Result<CreateContainerRequest> parse_create_container(const Json& body, std::string_view name_query,
                                                      unsigned host_cpus = 0);

// ---- POST /containers/{id}/update -----------------------------------------------------------------------

// The body (Resources fields and RestartPolicy at the top level) laid over `current`, with the same checks
// and messages as create. Fields the body does not name keep their values.
Result<daemon::containers::HostConfig> parse_update_container(const Json& body,
                                                              const daemon::containers::HostConfig& current,
                                                              unsigned host_cpus = 0);

// ---- GET /containers/{id}/json -------------------------------------------------------------------------

struct ContainerInspectExtras {
  std::string log_path;  // the json-file log; "" for LogConfig none
  std::string resolv_conf_path;
  std::string hostname_path;
  std::string hosts_path;
  std::vector<std::string> exec_ids;  // empty: ExecIDs is null, as dockerd shows it
  std::optional<int64_t> size_rw;     // ?size=1: SizeRw and SizeRootFs appear
  std::optional<int64_t> size_root_fs;
};

Json container_inspect_json(const daemon::containers::ContainerRecord& container,
                            const ContainerInspectExtras& extras);

// State.Status and the booleans dockerd derives from it ({"Status", "Running", "Paused", ...}).
Json container_state_json(const daemon::containers::ContainerRecord& container);

// ---- GET /containers/json ------------------------------------------------------------------------------

struct ContainerSummaryExtras {
  std::vector<std::string> link_names;  // "/web/db" for each legacy link to it: Names lists them too
  std::optional<int64_t> size_rw;       // ?size=1
  std::optional<int64_t> size_root_fs;
};

Json container_summary_json(const daemon::containers::ContainerRecord& container,
                            std::chrono::system_clock::time_point now,
                            const ContainerSummaryExtras& extras = {});

// `docker ps`'s COMMAND: Path and Args joined by spaces, an argument with a space in single quotes
// (unescaped, as dockerd does): sh -c 'echo hi'.
std::string container_command_text(const daemon::containers::ContainerRecord& container);

// `docker ps`'s STATUS, as dockerd's State.String(): "Created", "Up 5 seconds", "Up 2 minutes (Paused)",
// "Restarting (1) 3 seconds ago", "Exited (0) 3 minutes ago", "Removal In Progress", "Dead".
std::string container_status_text(const daemon::containers::ContainerRecord& container,
                                  std::chrono::system_clock::time_point now);

// go-units' HumanDuration: "Less than a second", "1 second", "About a minute", "3 hours", "2 weeks"...
std::string human_duration(std::chrono::nanoseconds duration);

// Path and Args as dockerd shows them: the first of Entrypoint+Cmd, and the rest.
std::string container_path(const daemon::containers::ContainerConfig& config);
std::vector<std::string> container_args(const daemon::containers::ContainerConfig& config);

// The network entry name(s) dockerd shows for a NetworkMode: "default" -> "bridge", "none", "host", a
// network's name; "container:<id>" shows none.
std::vector<std::string> container_network_names(const daemon::containers::ContainerRecord& container);

// ---- filters of GET /containers/json -------------------------------------------------------------------

// The names dockerd accepts; pass to Filters::parse (others: "invalid filter 'x'").
const std::set<std::string_view>& container_filter_names();

// A container that a before/since filter names: its id and created time.
struct ContainerOrder {
  std::string id;
  std::string created;  // RFC 3339 with nanoseconds, as ContainerRecord.created
};
// Finds a container by id, id prefix or name (as the rest of the API does). kNotFound in dockerd's words
// ("No such container: x") when there is none; the error is passed through.
using ContainerOrderLookup = std::function<Result<ContainerOrder>(std::string_view id_or_name)>;
// The image ids an ancestor filter value names ("busybox", "busybox:1.36", "sha256:..", an id prefix):
// empty when no image matches (the value then matches no container, as in dockerd).
using AncestorResolver = std::function<std::vector<std::string>(std::string_view reference)>;

struct ContainerListFilter {
  std::vector<std::string> id_prefixes;
  std::vector<std::string> name_patterns;  // regular expressions, searched in "/name" and "name"
  std::vector<std::string> labels;         // "key" or "key=value"; all must match
  std::set<daemon::containers::ContainerState> states;
  std::optional<std::set<std::string>> ancestor_image_ids;  // set when the filter is present
  std::vector<int> exit_codes;
  std::optional<ContainerOrder> before;
  std::optional<ContainerOrder> since;
  std::vector<std::string> networks;
  std::optional<bool> is_task;  // Kiln has no swarm tasks: true matches nothing
  bool match_nothing = false;   // volume, publish, expose, health other than "none": Kiln has none
};

// Checks values (status, exited, health, is-task) with dockerd's messages and resolves before/since and
// ancestor through the callbacks, so that `matches` is pure.
Result<ContainerListFilter> parse_container_filters(const Filters& filters,
                                                    const ContainerOrderLookup& lookup,
                                                    const AncestorResolver& ancestors);

bool matches(const ContainerListFilter& filter, const daemon::containers::ContainerRecord& container);
// GET /containers/json's whole rule: `matches`, and a stopped container only with ?all=1, ?limit>0 or a
// status filter, as dockerd has it. Sorting newest first and applying the limit are the caller's.
bool listed(const ContainerListFilter& filter, const daemon::containers::ContainerRecord& container, bool all,
            int64_t limit);

}  // namespace kiln::api::docker

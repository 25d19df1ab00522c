// ContainerRecord: everything kilnd knows about one Docker container, as stored in kiln.db (one JSON document
// per row, beside the VM records) and as the Docker API shows it. The container runs in its own VM
// (`vm_id`); this record holds what Docker users see: the configuration given at create (merged with the
// image's), the state and exit code. Plain data; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "daemon/state/vm_record.h"

namespace kiln::daemon::containers {

// Docker's State.Status values.
enum class ContainerState { kCreated, kRunning, kPaused, kRestarting, kRemoving, kExited, kDead };
std::string_view to_string(ContainerState state);
std::optional<ContainerState> container_state_from_string(std::string_view text);

struct RestartPolicy {
  enum class Kind { kNo, kAlways, kOnFailure, kUnlessStopped } kind = Kind::kNo;
  unsigned maximum_retry_count = 0;  // on-failure:N; 0 means unlimited
  bool operator==(const RestartPolicy&) const = default;
};
// Docker's names: "no" (also ""), "always", "on-failure", "unless-stopped".
std::string_view to_string(RestartPolicy::Kind kind);
// kInvalidArgument in dockerd's words for an unknown name or a retry count with a policy other than
// on-failure ("maximum retry count cannot be used with restart policy 'always'").
Result<RestartPolicy> make_restart_policy(std::string_view name, int64_t maximum_retry_count);

struct LogConfig {
  std::string type = "json-file";              // the only driver; "none" discards
  std::map<std::string, std::string> options;  // json-file: max-size ("10m"), max-file ("3")
  bool operator==(const LogConfig&) const = default;
};

// What runs: fixed at create, the image's configuration merged in (Env, Entrypoint/Cmd, WorkingDir, User,
// StopSignal, Labels), as dockerd merges it.
struct ContainerConfig {
  std::string image;     // as the client named it ("busybox", "busybox:latest", "sha256:...")
  std::string image_id;  // "sha256:<64 hex>"
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "K=V"; includes PATH and HOSTNAME
  std::string working_dir;       // empty: "/"
  std::string user;              // "name", "uid", "name:group", "uid:gid"; empty: root
  std::string hostname;          // default: the first 12 hex digits of the id
  std::string domainname;
  bool tty = false;
  bool open_stdin = false;
  bool stdin_once = false;
  bool attach_stdin = false;
  bool attach_stdout = false;
  bool attach_stderr = false;
  std::map<std::string, std::string> labels;  // the image's, then the client's
  std::string stop_signal;                    // "SIGTERM" when neither image nor client set one
  std::optional<int> stop_timeout;            // seconds; nullopt: 10
  uint16_t console_rows = 0;                  // HostConfig.ConsoleSize: initial tty size (0: 24x80)
  uint16_t console_cols = 0;
};

// One of a container's mounts: a bind mount of a host path, a volume or a tmpfs (docker run -v, --mount,
// --tmpfs, an image's VOLUME). The agent places it inside the container's root in its VM.
struct MountPoint {
  enum class Type { kBind, kVolume, kTmpfs } type = Type::kBind;
  std::string source;       // kBind: the host path; kVolume: the volume's data directory (set at create)
  std::string name;         // kVolume: the volume's name
  std::string destination;  // absolute, clean
  bool read_only = false;
  std::string mode;            // -v's third field as given ("ro", "z", "rw,nocopy"); "" for --mount
  std::string propagation;     // kBind: "rprivate" unless given (recorded: a VM's mounts propagate nowhere)
  bool copy_up = false;        // kVolume: filled from the image while empty (not with "nocopy")
  bool create_source = false;  // kBind from -v: a missing host directory is made at start, as dockerd does
  bool anonymous = false;      // kVolume made for this container: `docker rm -v` removes it
  std::string tmpfs_options;   // kTmpfs: "noexec,nosuid,nodev,size=...,mode=..."
  std::map<std::string, std::string>
      volume_labels;  // kVolume (--mount volume-label=): for a volume it creates
  bool shown = true;  // in inspect's Mounts (HostConfig.Tmpfs entries are not, as in dockerd)
  bool operator==(const MountPoint&) const = default;
};
std::string_view to_string(MountPoint::Type type);  // "bind", "volume", "tmpfs"

// One network a container joins (docker run --network, NetworkingConfig.EndpointsConfig, docker network
// connect): one NIC of its VM while it runs, in this order. See api/docker/container_networks.h.
struct NetworkEndpointConfig {
  std::string network;               // as the client named it: the key of inspect's NetworkSettings.Networks
  std::string network_id;            // resolved when it was given
  std::vector<std::string> aliases;  // --network-alias (user-defined networks only)
  std::string ipv4;                  // --ip (IPAMConfig.IPv4Address); empty: the next free address
  std::string mac;                   // --mac-address; empty: derived from the address
  // EndpointSettings.Links ("name:alias", docker-compose's `links:`, `docker run --network N --link`): on a
  // user-defined network ALIAS names NAME's address there for this container alone (its /etc/hosts).
  std::vector<std::string> links;
  bool operator==(const NetworkEndpointConfig&) const = default;
};

// A legacy link (docker run --link NAME:ALIAS) on the default network: the linked container's address
// under ALIAS in /etc/hosts and Docker's ALIAS_NAME, ALIAS_PORT_*, ALIAS_ENV_* variables at each start.
struct ContainerLink {
  std::string container;  // the linked container: as given at create, then its id
  std::string name;       // its name when linked (inspect shows "/NAME:/SELF/ALIAS")
  std::string alias;
  bool operator==(const ContainerLink&) const = default;
};

// How it runs: Docker's HostConfig, as far as it maps onto a VM.
struct HostConfig {
  bool auto_remove = false;  // --rm: kilnd removes the container when it exits
  RestartPolicy restart_policy;
  uint64_t memory_bytes = 0;  // the VM's memory; 0: the default
  uint64_t nano_cpus = 0;     // --cpus: vCPUs rounded up; 0: the default
  unsigned cpu_count = 0;
  std::vector<std::string> cap_add;   // "CAP_NET_ADMIN" or "NET_ADMIN" or "ALL", as given
  std::vector<std::string> cap_drop;  // likewise
  bool privileged = false;
  bool read_only_root = false;
  bool init = false;  // --init: a minimal init as PID 1 reaps and forwards signals
  LogConfig log_config;
  std::string network_mode = "default";  // "default", "bridge", "none" or a network's name or id
  // The guest's resolver and /etc/hosts (--dns, --dns-option, --dns-search, --add-host NAME:IP|host-gateway).
  std::vector<std::string> dns;
  std::vector<std::string> dns_options;
  std::vector<std::string> dns_search;
  std::vector<std::string> extra_hosts;
  std::vector<ContainerLink> links;  // default network only (dockerd ignores them on user-defined ones)
  std::vector<MountPoint> mounts;    // Binds, Mounts, Tmpfs, Config.Volumes and the image's VOLUMEs
};

struct ContainerRecord {
  std::string id;       // 64 hex digits
  std::string name;     // without the leading "/"
  std::string created;  // RFC 3339 with nanoseconds, UTC
  ContainerConfig config;
  HostConfig host_config;
  // The Config and HostConfig objects of the create request as the client sent them: inspect shows them with
  // the typed fields above laid over, so fields Kiln only records (ExposedPorts, PortBindings, Binds,
  // Dns, ...) come back as they went in.
  Json raw_config = Json::object();
  Json raw_host_config = Json::object();
  Json raw_networking_config = Json::object();

  std::string vm_id;  // the container's VM (owner label "kiln.container.id" on it)
  // The networks it joins, in NIC order; empty with --network none.
  std::vector<NetworkEndpointConfig> networks;
  // Its published ports (PortBindings and -P of its exposed ports; a host port 0 is chosen at each start).
  std::vector<PortPublication> ports;

  ContainerState state = ContainerState::kCreated;
  int exit_code = 0;
  std::string error;  // State.Error: why the last start failed
  bool oom_killed = false;
  int64_t pid = 0;          // State.Pid: the VM monitor's pid while running
  std::string started_at;   // RFC 3339 nanos; empty: never
  std::string finished_at;  // RFC 3339 nanos; empty: never
  unsigned restart_count = 0;
  // The main process's id on its VM's agent connection while it runs: a restarted kilnd takes it over by it.
  uint32_t main_process = 0;
  // A `docker stop` (or kill) by the user: restart policies other than "always" leave it stopped, and
  // "unless-stopped" stays stopped across kilnd restarts.
  bool stopped_by_user = false;
  // The legacy links' variables as of its last start (its processes and execs get them).
  std::vector<std::string> link_env;
};

Json to_storage_json(const ContainerRecord& container);
Result<ContainerRecord> container_from_storage_json(const Json& json);

}  // namespace kiln::daemon::containers

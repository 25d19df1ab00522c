#include "api/docker/container_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <regex>
#include <utility>

#include "agent/protocol/linux_capabilities.h"
#include "api/docker/container_mounts.h"
#include "api/docker/go_json.h"
#include "common/rfc3339.h"
#include "daemon/containers/container_names.h"
#include "daemon/containers/json_file_log.h"

namespace kiln::api::docker {
namespace {

using daemon::containers::ContainerConfig;
using daemon::containers::ContainerRecord;
using daemon::containers::ContainerState;
using daemon::containers::HostConfig;

constexpr std::string_view kWrapper = "ContainerConfigWrapper";

// The fields of moby's container.Config, as inspect shows them.
constexpr std::array<std::string_view, 25> kConfigFields = {
    "Hostname",     "Domainname",   "User",        "AttachStdin",     "AttachStdout",
    "AttachStderr", "ExposedPorts", "Tty",         "OpenStdin",       "StdinOnce",
    "Env",          "Cmd",          "Healthcheck", "ArgsEscaped",     "Image",
    "Volumes",      "WorkingDir",   "Entrypoint",  "NetworkDisabled", "MacAddress",
    "OnBuild",      "Labels",       "StopSignal",  "StopTimeout",     "Shell"};

// The fields of moby's container.HostConfig (with Resources).
constexpr std::array<std::string_view, 72> kHostConfigFields = {"Binds",
                                                                "ContainerIDFile",
                                                                "LogConfig",
                                                                "NetworkMode",
                                                                "PortBindings",
                                                                "RestartPolicy",
                                                                "AutoRemove",
                                                                "VolumeDriver",
                                                                "VolumesFrom",
                                                                "ConsoleSize",
                                                                "Annotations",
                                                                "CapAdd",
                                                                "CapDrop",
                                                                "CgroupnsMode",
                                                                "Dns",
                                                                "DnsOptions",
                                                                "DnsSearch",
                                                                "ExtraHosts",
                                                                "GroupAdd",
                                                                "IpcMode",
                                                                "Cgroup",
                                                                "Links",
                                                                "OomScoreAdj",
                                                                "PidMode",
                                                                "Privileged",
                                                                "PublishAllPorts",
                                                                "ReadonlyRootfs",
                                                                "SecurityOpt",
                                                                "StorageOpt",
                                                                "Tmpfs",
                                                                "UTSMode",
                                                                "UsernsMode",
                                                                "ShmSize",
                                                                "Sysctls",
                                                                "Runtime",
                                                                "Isolation",
                                                                "CpuShares",
                                                                "Memory",
                                                                "NanoCpus",
                                                                "CgroupParent",
                                                                "BlkioWeight",
                                                                "BlkioWeightDevice",
                                                                "BlkioDeviceReadBps",
                                                                "BlkioDeviceWriteBps",
                                                                "BlkioDeviceReadIOps",
                                                                "BlkioDeviceWriteIOps",
                                                                "CpuPeriod",
                                                                "CpuQuota",
                                                                "CpuRealtimePeriod",
                                                                "CpuRealtimeRuntime",
                                                                "CpusetCpus",
                                                                "CpusetMems",
                                                                "Devices",
                                                                "DeviceCgroupRules",
                                                                "DeviceRequests",
                                                                "KernelMemory",
                                                                "KernelMemoryTCP",
                                                                "MemoryReservation",
                                                                "MemorySwap",
                                                                "MemorySwappiness",
                                                                "OomKillDisable",
                                                                "PidsLimit",
                                                                "Ulimits",
                                                                "CpuCount",
                                                                "CpuPercent",
                                                                "IOMaximumIOps",
                                                                "IOMaximumBandwidth",
                                                                "Mounts",
                                                                "MaskedPaths",
                                                                "ReadonlyPaths",
                                                                "Init",
                                                                "CpuRtPeriod"};

// The known fields of `object` under their Go names; unknown ones are dropped, as dockerd ignores them.
template <size_t N>
Json known_fields(const Json& object, const std::array<std::string_view, N>& names) {
  Json known = Json::object();
  if (!object.is_object()) return known;
  for (std::string_view name : names) {
    auto exact = object.find(name);
    if (exact != object.end()) {
      known[std::string(name)] = *exact;
      continue;
    }
    for (const auto& [key, value] : object.items()) {
      if (equal_fold(key, name)) {
        known[std::string(name)] = value;
        break;
      }
    }
  }
  return known;
}

// The log drivers dockerd knows; Kiln writes json-file (or nothing).
constexpr std::array<std::string_view, 10> kOtherLogDrivers = {"local",   "syslog",    "journald", "gelf",
                                                               "fluentd", "awslogs",   "splunk",   "etwlogs",
                                                               "gcplogs", "logentries"};

Result<void> check_log_config(const daemon::containers::LogConfig& log) {
  if (log.type == "none") return ok();
  if (log.type == "json-file") return daemon::containers::validate_json_file_options(log.options);
  if (std::find(kOtherLogDrivers.begin(), kOtherLogDrivers.end(), log.type) != kOtherLogDrivers.end())
    return Error::invalid_argument(
        fmt::format("logging driver \"{}\" is not supported by Kiln: use json-file or none", log.type));
  return Error::invalid_argument(
      fmt::format("error looking up logging plugin {}: plugin \"{}\" not found", log.type, log.type));
}

Result<void> parse_config_fields(const Json& body, CreateContainerRequest& request) {
  StructReader config(body, kWrapper, "");
  ContainerConfig& out = request.config;
  if (auto value = KILN_TRY(config.string("Hostname"))) out.hostname = *value;
  if (auto value = KILN_TRY(config.string("Domainname"))) out.domainname = *value;
  if (auto value = KILN_TRY(config.string("User"))) out.user = *value;
  if (auto value = KILN_TRY(config.boolean("AttachStdin"))) out.attach_stdin = *value;
  if (auto value = KILN_TRY(config.boolean("AttachStdout"))) out.attach_stdout = *value;
  if (auto value = KILN_TRY(config.boolean("AttachStderr"))) out.attach_stderr = *value;
  if (auto value = KILN_TRY(config.boolean("Tty"))) out.tty = *value;
  if (auto value = KILN_TRY(config.boolean("OpenStdin"))) out.open_stdin = *value;
  if (auto value = KILN_TRY(config.boolean("StdinOnce"))) out.stdin_once = *value;
  if (auto value = KILN_TRY(config.string_list("Env"))) out.env = std::move(*value);
  if (auto value = KILN_TRY(config.strslice("Cmd"))) out.cmd = std::move(*value);
  if (auto value = KILN_TRY(config.string("Image"))) out.image = *value;
  if (auto value = KILN_TRY(config.string("WorkingDir"))) out.working_dir = *value;
  if (auto value = KILN_TRY(config.strslice("Entrypoint"))) out.entrypoint = std::move(*value);
  if (auto value = KILN_TRY(config.string_map("Labels"))) out.labels = std::move(*value);
  if (auto value = KILN_TRY(config.string("StopSignal"))) out.stop_signal = *value;
  if (auto value = KILN_TRY(config.integer("StopTimeout", "int"))) {
    if (*value < std::numeric_limits<int>::min() || *value > std::numeric_limits<int>::max())
      return unmarshal_kind_error(fmt::format("number {}", *value), config.field("StopTimeout"), "int");
    out.stop_timeout = static_cast<int>(*value);
  }
  // Fields Kiln only records and shows; their types are still Go's.
  KILN_TRY(config.string_list("OnBuild"));
  KILN_TRY(config.strslice("Shell"));
  KILN_TRY(config.string("MacAddress"));
  KILN_TRY(config.boolean("ArgsEscaped"));
  KILN_TRY(config.boolean("NetworkDisabled"));
  KILN_TRY(config.object("ExposedPorts", "nat.PortSet"));
  if (const Json* volumes = KILN_TRY(config.object("Volumes", "map[string]struct {}"))) {
    for (const auto& [path, ignored] : volumes->items()) request.anonymous_volumes.push_back(path);
  }
  KILN_TRY(config.object("Healthcheck", "container.HealthConfig"));
  return ok();
}

Error cpu_range_error(unsigned host_cpus) {
  return Error::invalid_argument(fmt::format(
      "Range of CPUs is from 0.01 to {}.00, as there are only {} CPUs available", host_cpus, host_cpus));
}

Result<void> parse_host_config_fields(const Json& object, unsigned host_cpus, HostConfig& out, uint16_t& rows,
                                      uint16_t& cols, MountOptionsInput& mounts) {
  StructReader host(object, "HostConfig", "HostConfig");
  if (auto value = KILN_TRY(host.boolean("AutoRemove"))) out.auto_remove = *value;
  if (const Json* policy = KILN_TRY(host.object("RestartPolicy", "container.RestartPolicy"))) {
    StructReader restart(*policy, "RestartPolicy", "HostConfig.RestartPolicy");
    auto name = KILN_TRY(restart.string("Name"));
    auto count = KILN_TRY(restart.integer("MaximumRetryCount", "int"));
    out.restart_policy =
        KILN_TRY(daemon::containers::make_restart_policy(name.value_or(""), count.value_or(0)));
  }
  if (auto value = KILN_TRY(host.integer("Memory", "int64"))) {
    // moby's linuxMinMemory.
    constexpr int64_t kMinimumMemory = 6 * 1024 * 1024;
    if (*value != 0 && *value < kMinimumMemory)
      return Error::invalid_argument("Minimum memory limit allowed is 6MB");
    out.memory_bytes = static_cast<uint64_t>(*value);
  }
  if (auto value = KILN_TRY(host.integer("NanoCpus", "int64"))) {
    if (*value < 0) {
      if (host_cpus == 0) return Error::invalid_argument("NanoCpus can not be negative");
      return cpu_range_error(host_cpus);
    }
    out.nano_cpus = static_cast<uint64_t>(*value);
  }
  if (auto value = KILN_TRY(host.integer("CpuCount", "int64"))) {
    if (*value < 0 || *value > std::numeric_limits<unsigned>::max())
      return Error::invalid_argument(fmt::format("invalid CpuCount {}: must be a vCPU count", *value));
    out.cpu_count = static_cast<unsigned>(*value);
  }
  if (auto value = KILN_TRY(host.strslice("CapAdd"))) out.cap_add = std::move(*value);
  if (auto value = KILN_TRY(host.strslice("CapDrop"))) out.cap_drop = std::move(*value);
  if (auto value = KILN_TRY(host.boolean("Privileged"))) out.privileged = *value;
  if (auto value = KILN_TRY(host.boolean("ReadonlyRootfs"))) out.read_only_root = *value;
  if (auto value = KILN_TRY(host.boolean("Init"))) out.init = *value;
  if (const Json* log = KILN_TRY(host.object("LogConfig", "container.LogConfig"))) {
    StructReader log_reader(*log, "LogConfig", "HostConfig.LogConfig");
    if (auto type = KILN_TRY(log_reader.string("Type")); type && !type->empty()) out.log_config.type = *type;
    if (auto options = KILN_TRY(log_reader.string_map("Config")))
      out.log_config.options = std::move(*options);
  }
  if (auto value = KILN_TRY(host.string("NetworkMode", "container.NetworkMode")); value && !value->empty())
    out.network_mode = *value;
  if (auto value = KILN_TRY(host.string_list("Binds"))) mounts.binds = std::move(*value);
  if (auto value = KILN_TRY(host.string_map("Tmpfs"))) mounts.tmpfs = std::move(*value);
  mounts.mounts = host.find("Mounts");
  if (const Json* size = host.find("ConsoleSize")) {
    if (!size->is_array()) return unmarshal_error(*size, host.field("ConsoleSize"), "[2]uint");
    std::array<uint16_t*, 2> targets = {&rows, &cols};
    for (size_t i = 0; i < size->size() && i < targets.size(); ++i) {
      const Json& item = (*size)[i];
      if (item.is_null()) continue;
      int64_t number = KILN_TRY(StructReader::read_integer(item, host.field("ConsoleSize"), "uint"));
      if (number < 0)
        return unmarshal_kind_error(fmt::format("number {}", number), host.field("ConsoleSize"), "uint");
      *targets[i] = static_cast<uint16_t>(std::min<int64_t>(number, std::numeric_limits<uint16_t>::max()));
    }
  }
  return ok();
}

Result<void> check_host_config(const HostConfig& host, unsigned host_cpus) {
  if (host_cpus > 0 && host.nano_cpus > static_cast<uint64_t>(host_cpus) * 1'000'000'000ULL)
    return cpu_range_error(host_cpus);
  if (host.auto_remove && host.restart_policy.kind != daemon::containers::RestartPolicy::Kind::kNo)
    return Error::invalid_argument("can't create 'AutoRemove' container with restart policy");
  (void)KILN_TRY(agent::container_capabilities(host.cap_add, host.cap_drop));
  KILN_TRY(check_log_config(host.log_config));
  return ok();
}

Result<void> check_env(const std::vector<std::string>& env) {
  for (const std::string& entry : env) {
    // moby's ValidateEnv: the name before '=' must not be empty; "NAME" alone is allowed.
    if (entry.empty() || entry.front() == '=')
      return Error::invalid_argument(fmt::format("invalid environment variable: {}", entry));
  }
  return ok();
}

// ---- time -----------------------------------------------------------------------------------------------

constexpr std::string_view kZeroTime = "0001-01-01T00:00:00Z";

// RFC 3339 with its fractional seconds (parse_rfc3339 keeps whole seconds only).
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text) {
  auto seconds = parse_rfc3339(text);
  if (!seconds) return std::nullopt;
  std::chrono::nanoseconds fraction{0};
  if (size_t dot = text.find('.'); dot != std::string_view::npos) {
    int64_t scale = 100'000'000;
    for (size_t i = dot + 1; i < text.size() && text[i] >= '0' && text[i] <= '9' && scale > 0; ++i) {
      fraction += std::chrono::nanoseconds((text[i] - '0') * scale);
      scale /= 10;
    }
  }
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(*seconds) +
                                                                      fraction));
}

std::string time_or_zero(const std::string& text) {
  return text.empty() ? std::string(kZeroTime) : text;
}

std::string ago(const std::string& since, std::chrono::system_clock::time_point now) {
  auto time = parse_time(since);
  return human_duration(time ? now - *time : std::chrono::nanoseconds(0));
}

// ---- inspect pieces -------------------------------------------------------------------------------------

// Docker's types.MountPoint, in its field order; HostConfig.Tmpfs entries are not listed (as dockerd).
Json mounts_json(const std::vector<daemon::containers::MountPoint>& mounts) {
  using daemon::containers::MountPoint;
  Json list = Json::array();
  for (const auto& mount : mounts) {
    if (!mount.shown) continue;
    Json item{{"Type", std::string(daemon::containers::to_string(mount.type))}};
    if (mount.type == MountPoint::Type::kVolume) item["Name"] = mount.name;
    item["Source"] = mount.type == MountPoint::Type::kTmpfs ? "" : mount.source;
    item["Destination"] = mount.destination;
    if (mount.type == MountPoint::Type::kVolume) item["Driver"] = "local";
    item["Mode"] = mount.mode;
    item["RW"] = !mount.read_only;
    item["Propagation"] = mount.propagation;
    list.push_back(std::move(item));
  }
  return list;
}

Json list_or_null(const std::vector<std::string>& values) {
  if (values.empty()) return nullptr;
  Json list = Json::array();
  for (const auto& value : values) list.push_back(value);
  return list;
}

Json string_list(const std::vector<std::string>& values) {
  Json list = Json::array();
  for (const auto& value : values) list.push_back(value);
  return list;
}

// Sets `name`, dropping keys that differ from it only in case (a client's "image").
void set_field(Json& object, std::string_view name, Json value) {
  for (auto it = object.begin(); it != object.end();) {
    if (it.key() != name && equal_fold(it.key(), name)) {
      it = object.erase(it);
    } else {
      ++it;
    }
  }
  object[std::string(name)] = std::move(value);
}

Json value_or(const Json& object, std::string_view name, Json fallback) {
  auto it = object.find(name);
  if (it == object.end()) return fallback;
  return *it;
}

// What dockerd 20.10 shows for a container created with no options (defaults compose and docker-py read).
Json default_host_config() {
  return {{"Binds", nullptr},
          {"ContainerIDFile", ""},
          {"LogConfig", {{"Type", "json-file"}, {"Config", Json::object()}}},
          {"NetworkMode", "default"},
          {"PortBindings", Json::object()},
          {"RestartPolicy", {{"Name", "no"}, {"MaximumRetryCount", 0}}},
          {"AutoRemove", false},
          {"VolumeDriver", ""},
          {"VolumesFrom", nullptr},
          {"CapAdd", nullptr},
          {"CapDrop", nullptr},
          {"CgroupnsMode", "private"},
          {"Dns", Json::array()},
          {"DnsOptions", Json::array()},
          {"DnsSearch", Json::array()},
          {"ExtraHosts", nullptr},
          {"GroupAdd", nullptr},
          {"IpcMode", "private"},
          {"Cgroup", ""},
          {"Links", nullptr},
          {"OomScoreAdj", 0},
          {"PidMode", ""},
          {"Privileged", false},
          {"PublishAllPorts", false},
          {"ReadonlyRootfs", false},
          {"SecurityOpt", nullptr},
          {"UTSMode", ""},
          {"UsernsMode", ""},
          {"ShmSize", 67108864},
          {"Runtime", "kiln-vm"},
          {"ConsoleSize", {0, 0}},
          {"Isolation", ""},
          {"CpuShares", 0},
          {"Memory", 0},
          {"NanoCpus", 0},
          {"CgroupParent", ""},
          {"BlkioWeight", 0},
          {"BlkioWeightDevice", Json::array()},
          {"BlkioDeviceReadBps", Json::array()},
          {"BlkioDeviceWriteBps", Json::array()},
          {"BlkioDeviceReadIOps", Json::array()},
          {"BlkioDeviceWriteIOps", Json::array()},
          {"CpuPeriod", 0},
          {"CpuQuota", 0},
          {"CpuRealtimePeriod", 0},
          {"CpuRealtimeRuntime", 0},
          {"CpusetCpus", ""},
          {"CpusetMems", ""},
          {"Devices", Json::array()},
          {"DeviceCgroupRules", nullptr},
          {"DeviceRequests", nullptr},
          {"KernelMemory", 0},
          {"KernelMemoryTCP", 0},
          {"MemoryReservation", 0},
          {"MemorySwap", 0},
          {"MemorySwappiness", nullptr},
          {"OomKillDisable", false},
          {"PidsLimit", nullptr},
          {"Ulimits", Json::array()},
          {"CpuCount", 0},
          {"CpuPercent", 0},
          {"IOMaximumIOps", 0},
          {"IOMaximumBandwidth", 0},
          {"MaskedPaths",
           {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"}},
          {"ReadonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}};
}

bool is_zero(const Json& value) {
  return value.is_null() || (value.is_string() && value.get_ref<const std::string&>().empty()) ||
         (value.is_number() && value == 0);
}

Json host_config_json(const ContainerRecord& container) {
  const Json defaults = default_host_config();
  Json host = defaults;
  const Json raw = known_fields(container.raw_host_config, kHostConfigFields);
  for (const auto& [key, value] : raw.items()) host[key] = value;
  // What dockerd fills in at create where the client (the docker CLI always) sent zero values.
  for (const char* key : {"CgroupnsMode", "IpcMode", "Runtime", "ShmSize", "MaskedPaths", "ReadonlyPaths"}) {
    if (is_zero(host[key])) host[key] = defaults[key];
  }
  if (host["MemorySwappiness"].is_number() && host["MemorySwappiness"] < 0)
    host["MemorySwappiness"] = nullptr;
  if (host["PidsLimit"].is_number() && host["PidsLimit"] <= 0) host["PidsLimit"] = nullptr;
  const HostConfig& typed = container.host_config;
  // dockerd's default swap limit: as much swap as memory (a VM has none; shown as dockerd shows it).
  if (typed.memory_bytes > 0 && is_zero(host["MemorySwap"])) host["MemorySwap"] = typed.memory_bytes * 2;
  host["Memory"] = typed.memory_bytes;
  host["NanoCpus"] = typed.nano_cpus;
  // Resolved legacy links as dockerd shows them: "/db:/web/database".
  if (!typed.links.empty() && !typed.links.front().name.empty()) {
    Json links = Json::array();
    for (const auto& link : typed.links)
      links.push_back(fmt::format("/{}:/{}/{}", link.name, container.name, link.alias));
    host["Links"] = std::move(links);
  } else if (typed.links.empty()) {
    host["Links"] = nullptr;  // none, or all removed (docker rm --link)
  }
  host["CpuCount"] = typed.cpu_count;
  host["CapAdd"] = list_or_null(typed.cap_add);
  host["CapDrop"] = list_or_null(typed.cap_drop);
  host["Privileged"] = typed.privileged;
  host["ReadonlyRootfs"] = typed.read_only_root;
  // Init is a *bool with omitempty: shown only when the client set it.
  if (typed.init || (host.contains("Init") && !host["Init"].is_null())) {
    host["Init"] = typed.init;
  } else {
    host.erase("Init");
  }
  host["AutoRemove"] = typed.auto_remove;
  host["RestartPolicy"] = {{"Name", daemon::containers::to_string(typed.restart_policy.kind)},
                           {"MaximumRetryCount", typed.restart_policy.maximum_retry_count}};
  host["LogConfig"] = {{"Type", typed.log_config.type}, {"Config", typed.log_config.options}};
  host["NetworkMode"] = typed.network_mode;
  host["ConsoleSize"] = {container.config.console_rows, container.config.console_cols};
  return host;
}

Json config_json(const ContainerRecord& container) {
  Json config = known_fields(container.raw_config, kConfigFields);
  const ContainerConfig& typed = container.config;
  set_field(config, "Hostname", typed.hostname);
  set_field(config, "Domainname", typed.domainname);
  set_field(config, "User", typed.user);
  set_field(config, "AttachStdin", typed.attach_stdin);
  set_field(config, "AttachStdout", typed.attach_stdout);
  set_field(config, "AttachStderr", typed.attach_stderr);
  set_field(config, "Tty", typed.tty);
  set_field(config, "OpenStdin", typed.open_stdin);
  set_field(config, "StdinOnce", typed.stdin_once);
  set_field(config, "Env", list_or_null(typed.env));
  set_field(config, "Cmd", list_or_null(typed.cmd));
  set_field(config, "Image", typed.image);
  Json volumes = value_or(config, "Volumes", nullptr);
  set_field(config, "Volumes", volumes.is_object() && volumes.empty() ? Json(nullptr) : volumes);
  set_field(config, "WorkingDir", typed.working_dir);
  set_field(config, "Entrypoint", list_or_null(typed.entrypoint));
  set_field(config, "OnBuild", value_or(config, "OnBuild", nullptr));
  set_field(config, "Labels", typed.labels);
  if (typed.stop_signal.empty()) {
    config.erase("StopSignal");
  } else {
    set_field(config, "StopSignal", typed.stop_signal);
  }
  if (typed.stop_timeout) {
    set_field(config, "StopTimeout", *typed.stop_timeout);
  } else {
    config.erase("StopTimeout");
  }
  return config;
}

Json endpoint_json(const Json& requested) {
  Json endpoint = {{"IPAMConfig", nullptr},   {"Links", nullptr},         {"Aliases", nullptr},
                   {"NetworkID", ""},         {"EndpointID", ""},         {"Gateway", ""},
                   {"IPAddress", ""},         {"IPPrefixLen", 0},         {"IPv6Gateway", ""},
                   {"GlobalIPv6Address", ""}, {"GlobalIPv6PrefixLen", 0}, {"MacAddress", ""},
                   {"DriverOpts", nullptr}};
  if (requested.is_object()) {
    for (std::string_view name : {"IPAMConfig", "Links", "Aliases", "DriverOpts", "MacAddress"}) {
      if (const Json* value = find_field(requested, name)) endpoint[std::string(name)] = *value;
    }
  }
  return endpoint;
}

Json networks_json(const ContainerRecord& container) {
  Json networks = Json::object();
  const Json* endpoints = find_field(container.raw_networking_config, "EndpointsConfig");
  for (const std::string& name : container_network_names(container)) {
    const Json* requested = endpoints != nullptr ? find_field(*endpoints, name) : nullptr;
    networks[name] = endpoint_json(requested != nullptr ? *requested : Json());
  }
  return networks;
}

Json network_settings_json(const ContainerRecord& container) {
  return {{"Bridge", ""},
          {"SandboxID", ""},
          {"HairpinMode", false},
          {"LinkLocalIPv6Address", ""},
          {"LinkLocalIPv6PrefixLen", 0},
          {"Ports", Json::object()},
          {"SandboxKey", ""},
          {"SecondaryIPAddresses", nullptr},
          {"SecondaryIPv6Addresses", nullptr},
          {"EndpointID", ""},
          {"Gateway", ""},
          {"GlobalIPv6Address", ""},
          {"GlobalIPv6PrefixLen", 0},
          {"IPAddress", ""},
          {"IPPrefixLen", 0},
          {"IPv6Gateway", ""},
          {"MacAddress", ""},
          {"Networks", networks_json(container)}};
}

bool is_up(ContainerState state) {
  return state == ContainerState::kRunning || state == ContainerState::kPaused ||
         state == ContainerState::kRestarting;
}

// ---- filters --------------------------------------------------------------------------------------------

Result<int> parse_exit_code(const std::string& value) {
  // Go's strconv.Atoi: an optional sign, then decimal digits.
  std::string_view digits = value;
  if (digits.starts_with('+')) digits.remove_prefix(1);
  int code = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), code);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() ||
      (value.size() > 1 && value[0] == '+' && value[1] == '-'))
    return Error::invalid_argument(fmt::format(
        "invalid filter 'exited={}': strconv.Atoi: parsing \"{}\": invalid syntax", value, value));
  return code;
}

bool label_matches(const std::map<std::string, std::string>& labels, const std::string& filter) {
  size_t equals = filter.find('=');
  if (equals == std::string::npos) return labels.contains(filter);
  auto it = labels.find(filter.substr(0, equals));
  return it != labels.end() && it->second == filter.substr(equals + 1);
}

// Created order: time, then id for equal times, so that before/since never include the named container.
bool created_before(const std::string& created, const std::string& id, const ContainerOrder& other) {
  auto a = parse_time(created);
  auto b = parse_time(other.created);
  if (a && b && *a != *b) return *a < *b;
  if (!a || !b) {
    if (created != other.created) return created < other.created;
  }
  return id < other.id;
}

}  // namespace

// ---- create ---------------------------------------------------------------------------------------------

Result<CreateContainerRequest> parse_create_container(const Json& body, std::string_view name_query,
                                                      unsigned host_cpus) {
  if (!body.is_null() && !body.is_object())
    return Error::invalid_argument(fmt::format(
        "json: cannot unmarshal {} into Go value of type runconfig.ContainerConfigWrapper", json_kind(body)));
  bool has_config = std::any_of(kConfigFields.begin(), kConfigFields.end(),
                                [&](std::string_view name) { return has_field(body, name); });
  CreateContainerRequest request;
  KILN_TRY(parse_config_fields(body, request));
  StructReader wrapper(body, kWrapper, "");
  MountOptionsInput mounts;
  if (const Json* host = KILN_TRY(wrapper.object("HostConfig", "container.HostConfig"))) {
    KILN_TRY(parse_host_config_fields(*host, host_cpus, request.host_config, request.config.console_rows,
                                      request.config.console_cols, mounts));
    request.raw_host_config = known_fields(*host, kHostConfigFields);
  }
  mounts.anonymous_volumes = request.anonymous_volumes;
  if (const Json* networking = KILN_TRY(wrapper.object("NetworkingConfig", "network.NetworkingConfig"))) {
    StructReader reader(*networking, "NetworkingConfig", "NetworkingConfig");
    KILN_TRY(reader.object("EndpointsConfig", "map[string]*network.EndpointSettings"));
    request.raw_networking_config = *networking;
  }
  if (!has_config) return Error::invalid_argument("Config cannot be empty in order to create a container");
  request.raw_config = known_fields(body, kConfigFields);

  if (request.config.image.empty()) {
    // dockerd would create a container with an empty root filesystem when a command is given; Kiln's root
    // filesystem is an image's.
    if (request.config.cmd.empty() && request.config.entrypoint.empty())
      return Error::invalid_argument("No command specified");
    return Error::invalid_argument("No image specified: a Kiln container's root filesystem is its image");
  }
  KILN_TRY(check_env(request.config.env));
  KILN_TRY(check_host_config(request.host_config, host_cpus));
  request.host_config.mounts = KILN_TRY(parse_container_mounts(mounts));
  if (!name_query.empty()) request.name = KILN_TRY(daemon::containers::validate_container_name(name_query));
  return request;
}

// ---- inspect --------------------------------------------------------------------------------------------

std::string container_path(const ContainerConfig& config) {
  if (!config.entrypoint.empty()) return config.entrypoint.front();
  return config.cmd.empty() ? std::string() : config.cmd.front();
}

std::vector<std::string> container_args(const ContainerConfig& config) {
  std::vector<std::string> all = config.entrypoint;
  all.insert(all.end(), config.cmd.begin(), config.cmd.end());
  if (!all.empty()) all.erase(all.begin());
  return all;
}

std::vector<std::string> container_network_names(const ContainerRecord& container) {
  const std::string& mode = container.host_config.network_mode;
  if (mode.starts_with("container:")) return {};
  std::vector<std::string> names = {mode == "default" || mode.empty() ? "bridge" : mode};
  if (mode == "none" || mode == "host") return names;
  // Further networks a client asked for at create (compose names its project network here).
  if (const Json* endpoints = find_field(container.raw_networking_config, "EndpointsConfig");
      endpoints != nullptr && endpoints->is_object()) {
    for (const auto& [name, endpoint] : endpoints->items()) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  return names;
}

Json container_state_json(const ContainerRecord& container) {
  ContainerState state = container.state;
  return {{"Status", daemon::containers::to_string(state)},
          {"Running", is_up(state)},
          {"Paused", state == ContainerState::kPaused},
          {"Restarting", state == ContainerState::kRestarting},
          {"OOMKilled", container.oom_killed},
          {"Dead", state == ContainerState::kDead},
          {"Pid", container.pid},
          {"ExitCode", container.exit_code},
          {"Error", container.error},
          {"StartedAt", time_or_zero(container.started_at)},
          {"FinishedAt", time_or_zero(container.finished_at)}};
}

Json container_inspect_json(const ContainerRecord& container, const ContainerInspectExtras& extras) {
  Json inspect = {{"Id", container.id},
                  {"Created", container.created},
                  {"Path", container_path(container.config)},
                  {"Args", string_list(container_args(container.config))},
                  {"State", container_state_json(container)},
                  {"Image", container.config.image_id},
                  {"ResolvConfPath", extras.resolv_conf_path},
                  {"HostnamePath", extras.hostname_path},
                  {"HostsPath", extras.hosts_path},
                  {"LogPath", extras.log_path},
                  {"Name", "/" + container.name},
                  {"RestartCount", container.restart_count},
                  {"Driver", "erofs+overlay"},
                  {"Platform", "linux"},
                  {"MountLabel", ""},
                  {"ProcessLabel", ""},
                  {"AppArmorProfile", ""},
                  {"ExecIDs", list_or_null(extras.exec_ids)},
                  {"HostConfig", host_config_json(container)},
                  {"GraphDriver", {{"Name", "erofs+overlay"}, {"Data", nullptr}}},
                  {"Mounts", mounts_json(container.host_config.mounts)},
                  {"Config", config_json(container)},
                  {"NetworkSettings", network_settings_json(container)}};
  if (extras.size_rw) inspect["SizeRw"] = *extras.size_rw;
  if (extras.size_root_fs) inspect["SizeRootFs"] = *extras.size_root_fs;
  return inspect;
}

// ---- list -----------------------------------------------------------------------------------------------

std::string human_duration(std::chrono::nanoseconds duration) {
  // go-units HumanDuration, with Go's float conversions.
  double total_seconds = std::chrono::duration<double>(duration).count();
  auto seconds = static_cast<int64_t>(total_seconds);
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return fmt::format("{} seconds", seconds);
  auto minutes = static_cast<int64_t>(total_seconds / 60);
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return fmt::format("{} minutes", minutes);
  double total_hours = total_seconds / 3600;
  auto hours = static_cast<int64_t>(std::floor(total_hours + 0.5));  // Go: int(d.Hours() + 0.5)
  if (hours == 1) return "About an hour";
  if (hours < 48) return fmt::format("{} hours", hours);
  if (hours < 24 * 7 * 2) return fmt::format("{} days", hours / 24);
  if (hours < 24 * 30 * 2) return fmt::format("{} weeks", hours / 24 / 7);
  if (hours < 24 * 365 * 2) return fmt::format("{} months", hours / 24 / 30);
  return fmt::format("{} years", static_cast<int64_t>(total_hours) / 24 / 365);
}

std::string container_status_text(const ContainerRecord& container,
                                  std::chrono::system_clock::time_point now) {
  switch (container.state) {
    case ContainerState::kRunning:
      return "Up " + ago(container.started_at, now);
    case ContainerState::kPaused:
      return "Up " + ago(container.started_at, now) + " (Paused)";
    case ContainerState::kRestarting:
      return fmt::format("Restarting ({}) {} ago", container.exit_code, ago(container.finished_at, now));
    case ContainerState::kRemoving:
      return "Removal In Progress";
    case ContainerState::kDead:
      return "Dead";
    case ContainerState::kCreated:
    case ContainerState::kExited:
      break;
  }
  if (container.started_at.empty()) return "Created";
  if (container.finished_at.empty()) return "";
  return fmt::format("Exited ({}) {} ago", container.exit_code, ago(container.finished_at, now));
}

std::string container_command_text(const ContainerRecord& container) {
  std::string command = container_path(container.config);
  for (const std::string& arg : container_args(container.config)) {
    command += ' ';
    command += arg.find(' ') != std::string::npos ? fmt::format("'{}'", arg) : arg;
  }
  return command;
}

Json container_summary_json(const ContainerRecord& container, std::chrono::system_clock::time_point now,
                            const ContainerSummaryExtras& extras) {
  auto created = parse_rfc3339(container.created);
  Json names = Json::array({"/" + container.name});
  for (const std::string& link : extras.link_names) names.push_back(link);
  Json summary = {{"Id", container.id},
                  {"Names", names},
                  {"Image", container.config.image},
                  {"ImageID", container.config.image_id},
                  {"Command", container_command_text(container)},
                  {"Created", created ? static_cast<int64_t>(*created) : 0},
                  {"Ports", Json::array()},
                  {"Labels", container.config.labels},
                  {"State", daemon::containers::to_string(container.state)},
                  {"Status", container_status_text(container, now)},
                  {"HostConfig", {{"NetworkMode", container.host_config.network_mode}}},
                  {"NetworkSettings", {{"Networks", networks_json(container)}}},
                  {"Mounts", mounts_json(container.host_config.mounts)}};
  if (extras.size_rw) summary["SizeRw"] = *extras.size_rw;
  if (extras.size_root_fs) summary["SizeRootFs"] = *extras.size_root_fs;
  return summary;
}

// ---- filters --------------------------------------------------------------------------------------------

const std::set<std::string_view>& container_filter_names() {
  static const std::set<std::string_view> kNames = {"ancestor", "before",    "exited",  "expose", "health",
                                                    "id",       "isolation", "is-task", "label",  "name",
                                                    "network",  "publish",   "since",   "status", "volume"};
  return kNames;
}

Result<ContainerListFilter> parse_container_filters(const Filters& filters,
                                                    const ContainerOrderLookup& lookup,
                                                    const AncestorResolver& ancestors) {
  ContainerListFilter filter;
  filter.id_prefixes = filters.get("id");
  filter.name_patterns = filters.get("name");
  filter.labels = filters.get("label");
  for (const std::string& status : filters.get("status")) {
    auto state = daemon::containers::container_state_from_string(status);
    if (!state) return Error::invalid_argument(fmt::format("invalid filter 'status={}'", status));
    filter.states.insert(*state);
  }
  for (const std::string& code : filters.get("exited"))
    filter.exit_codes.push_back(KILN_TRY(parse_exit_code(code)));
  if (filters.has("ancestor")) {
    filter.ancestor_image_ids.emplace();
    for (const std::string& reference : filters.get("ancestor")) {
      for (std::string& id : ancestors(reference)) filter.ancestor_image_ids->insert(std::move(id));
    }
  }
  // dockerd takes the last value of before/since.
  if (const auto& values = filters.get("before"); !values.empty())
    filter.before = KILN_TRY(lookup(values.back()));
  if (const auto& values = filters.get("since"); !values.empty())
    filter.since = KILN_TRY(lookup(values.back()));
  filter.networks = filters.get("network");
  filter.is_task = KILN_TRY(filters.boolean("is-task"));
  if (filters.has("health")) {
    bool none = false;
    for (const std::string& value : filters.get("health")) {
      if (value != "starting" && value != "healthy" && value != "unhealthy" && value != "none")
        return Error::invalid_argument(fmt::format("Unrecognised filter value for health: {}", value));
      none = none || value == "none";
    }
    // Kiln runs no healthchecks: every container's health is "none".
    if (!none) filter.match_nothing = true;
  }
  // Kiln containers have no volumes and publish or expose no ports yet.
  if (filters.has("volume") || filters.has("publish") || filters.has("expose")) filter.match_nothing = true;
  return filter;
}

bool listed(const ContainerListFilter& filter, const ContainerRecord& container, bool all, int64_t limit) {
  // dockerd lists stopped containers with all=1, a limit or a status filter (not with before/since).
  bool include_stopped = all || limit > 0 || !filter.states.empty();
  return (include_stopped || is_up(container.state)) && matches(filter, container);
}

bool matches(const ContainerListFilter& filter, const ContainerRecord& container) {
  if (filter.match_nothing) return false;
  if (filter.is_task.value_or(false)) return false;
  if (!filter.id_prefixes.empty() &&
      std::none_of(filter.id_prefixes.begin(), filter.id_prefixes.end(),
                   [&](const std::string& prefix) { return container.id.starts_with(prefix); }))
    return false;
  if (!filter.name_patterns.empty()) {
    std::string slashed = "/" + container.name;
    bool any = std::any_of(
        filter.name_patterns.begin(), filter.name_patterns.end(), [&](const std::string& pattern) {
          try {
            std::regex regex(pattern);
            return std::regex_search(slashed, regex) || std::regex_search(container.name, regex);
          } catch (const std::regex_error&) {
            return false;  // as dockerd: a pattern that does not compile matches nothing
          }
        });
    if (!any) return false;
  }
  for (const std::string& label : filter.labels) {
    if (!label_matches(container.config.labels, label)) return false;
  }
  if (!filter.states.empty() && !filter.states.contains(container.state)) return false;
  if (filter.ancestor_image_ids && !filter.ancestor_image_ids->contains(container.config.image_id))
    return false;
  if (!filter.exit_codes.empty()) {
    bool finished = !is_up(container.state) && !container.started_at.empty();
    if (!finished || std::find(filter.exit_codes.begin(), filter.exit_codes.end(), container.exit_code) ==
                         filter.exit_codes.end())
      return false;
  }
  if (filter.before &&
      (container.id == filter.before->id || !created_before(container.created, container.id, *filter.before)))
    return false;
  if (filter.since &&
      (container.id == filter.since->id || created_before(container.created, container.id, *filter.since)))
    return false;
  if (!filter.networks.empty()) {
    auto names = container_network_names(container);
    if (std::none_of(filter.networks.begin(), filter.networks.end(), [&](const std::string& network) {
          return std::find(names.begin(), names.end(), network) != names.end();
        }))
      return false;
  }
  return true;
}

Result<HostConfig> parse_update_container(const Json& body, const HostConfig& current, unsigned host_cpus) {
  if (!body.is_object()) return Error::invalid_argument("update: the body must be a JSON object");
  HostConfig updated = current;
  uint16_t rows = 0, cols = 0;
  MountOptionsInput ignored_mounts;  // an update's body has no mounts (dockerd ignores such fields too)
  KILN_TRY(parse_host_config_fields(body, host_cpus, updated, rows, cols, ignored_mounts));
  if (updated.auto_remove && updated.restart_policy.kind != daemon::containers::RestartPolicy::Kind::kNo &&
      !(updated.restart_policy == current.restart_policy))
    return Error::invalid_argument(
        "Restart policy cannot be updated because AutoRemove is enabled for the container");
  return updated;
}

}  // namespace kiln::api::docker

#include "daemon/containers/container_record.h"

#include <fmt/format.h>

#include <array>
#include <limits>
#include <utility>

namespace kiln::daemon::containers {
namespace {

constexpr std::pair<ContainerState, std::string_view> kStateNames[] = {
    {ContainerState::kCreated, "created"},   {ContainerState::kRunning, "running"},
    {ContainerState::kPaused, "paused"},     {ContainerState::kRestarting, "restarting"},
    {ContainerState::kRemoving, "removing"}, {ContainerState::kExited, "exited"},
    {ContainerState::kDead, "dead"},
};

constexpr std::pair<RestartPolicy::Kind, std::string_view> kPolicyNames[] = {
    {RestartPolicy::Kind::kNo, "no"},
    {RestartPolicy::Kind::kAlways, "always"},
    {RestartPolicy::Kind::kOnFailure, "on-failure"},
    {RestartPolicy::Kind::kUnlessStopped, "unless-stopped"},
};

Json string_list(const std::vector<std::string>& values) {
  Json list = Json::array();
  for (const auto& value : values) list.push_back(value);
  return list;
}

std::vector<std::string> read_string_list(const Json& json, std::string_view key) {
  std::vector<std::string> values;
  auto it = json.find(key);
  if (it == json.end() || !it->is_array()) return values;
  for (const auto& item : *it) {
    if (item.is_string()) values.push_back(item.get<std::string>());
  }
  return values;
}

std::map<std::string, std::string> read_string_map(const Json& json, std::string_view key) {
  std::map<std::string, std::string> values;
  auto it = json.find(key);
  if (it == json.end() || !it->is_object()) return values;
  for (const auto& [name, value] : it->items()) {
    if (value.is_string()) values[name] = value.get<std::string>();
  }
  return values;
}

Json read_object(const Json& json, std::string_view key) {
  auto it = json.find(key);
  return it != json.end() && it->is_object() ? *it : Json::object();
}

Json config_to_json(const ContainerConfig& config) {
  return {{"image", config.image},
          {"image_id", config.image_id},
          {"entrypoint", string_list(config.entrypoint)},
          {"cmd", string_list(config.cmd)},
          {"env", string_list(config.env)},
          {"working_dir", config.working_dir},
          {"user", config.user},
          {"hostname", config.hostname},
          {"domainname", config.domainname},
          {"tty", config.tty},
          {"open_stdin", config.open_stdin},
          {"stdin_once", config.stdin_once},
          {"attach_stdin", config.attach_stdin},
          {"attach_stdout", config.attach_stdout},
          {"attach_stderr", config.attach_stderr},
          {"labels", config.labels},
          {"stop_signal", config.stop_signal},
          {"stop_timeout", config.stop_timeout ? Json(*config.stop_timeout) : Json(nullptr)},
          {"console_rows", config.console_rows},
          {"console_cols", config.console_cols}};
}

ContainerConfig config_from_json(const Json& json) {
  ContainerConfig config;
  config.image = json.value("image", "");
  config.image_id = json.value("image_id", "");
  config.entrypoint = read_string_list(json, "entrypoint");
  config.cmd = read_string_list(json, "cmd");
  config.env = read_string_list(json, "env");
  config.working_dir = json.value("working_dir", "");
  config.user = json.value("user", "");
  config.hostname = json.value("hostname", "");
  config.domainname = json.value("domainname", "");
  config.tty = json.value("tty", false);
  config.open_stdin = json.value("open_stdin", false);
  config.stdin_once = json.value("stdin_once", false);
  config.attach_stdin = json.value("attach_stdin", false);
  config.attach_stdout = json.value("attach_stdout", false);
  config.attach_stderr = json.value("attach_stderr", false);
  config.labels = read_string_map(json, "labels");
  config.stop_signal = json.value("stop_signal", "");
  if (auto it = json.find("stop_timeout"); it != json.end() && it->is_number_integer())
    config.stop_timeout = it->get<int>();
  config.console_rows = json.value("console_rows", uint16_t{0});
  config.console_cols = json.value("console_cols", uint16_t{0});
  return config;
}

constexpr std::array<std::pair<MountPoint::Type, std::string_view>, 3> kMountTypeNames = {
    {{MountPoint::Type::kBind, "bind"},
     {MountPoint::Type::kVolume, "volume"},
     {MountPoint::Type::kTmpfs, "tmpfs"}}};

Json mounts_to_json(const std::vector<MountPoint>& mounts) {
  Json list = Json::array();
  for (const auto& mount : mounts) {
    list.push_back({{"type", to_string(mount.type)},
                    {"source", mount.source},
                    {"name", mount.name},
                    {"destination", mount.destination},
                    {"read_only", mount.read_only},
                    {"mode", mount.mode},
                    {"propagation", mount.propagation},
                    {"copy_up", mount.copy_up},
                    {"create_source", mount.create_source},
                    {"anonymous", mount.anonymous},
                    {"tmpfs_options", mount.tmpfs_options},
                    {"volume_labels", mount.volume_labels},
                    {"shown", mount.shown}});
  }
  return list;
}

std::vector<MountPoint> mounts_from_json(const Json& json) {
  std::vector<MountPoint> mounts;
  auto list = json.find("mounts");
  if (list == json.end() || !list->is_array()) return mounts;
  for (const auto& item : *list) {
    if (!item.is_object()) continue;
    MountPoint mount;
    std::string type = item.value("type", "bind");
    for (auto [value, name] : kMountTypeNames) {
      if (name == type) mount.type = value;
    }
    mount.source = item.value("source", "");
    mount.name = item.value("name", "");
    mount.destination = item.value("destination", "");
    mount.read_only = item.value("read_only", false);
    mount.mode = item.value("mode", "");
    mount.propagation = item.value("propagation", "");
    mount.copy_up = item.value("copy_up", false);
    mount.create_source = item.value("create_source", false);
    mount.anonymous = item.value("anonymous", false);
    mount.tmpfs_options = item.value("tmpfs_options", "");
    mount.volume_labels = read_string_map(item, "volume_labels");
    mount.shown = item.value("shown", true);
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

Json links_json(const std::vector<ContainerLink>& links) {
  Json out = Json::array();
  for (const ContainerLink& link : links)
    out.push_back({{"container", link.container}, {"name", link.name}, {"alias", link.alias}});
  return out;
}

Json host_config_to_json(const HostConfig& host) {
  return {{"auto_remove", host.auto_remove},
          {"mounts", mounts_to_json(host.mounts)},
          {"restart_policy",
           {{"name", to_string(host.restart_policy.kind)},
            {"maximum_retry_count", host.restart_policy.maximum_retry_count}}},
          {"memory_bytes", host.memory_bytes},
          {"nano_cpus", host.nano_cpus},
          {"cpu_count", host.cpu_count},
          {"cap_add", string_list(host.cap_add)},
          {"cap_drop", string_list(host.cap_drop)},
          {"privileged", host.privileged},
          {"read_only_root", host.read_only_root},
          {"init", host.init},
          {"log_config", {{"type", host.log_config.type}, {"options", host.log_config.options}}},
          {"network_mode", host.network_mode},
          {"dns", string_list(host.dns)},
          {"dns_options", string_list(host.dns_options)},
          {"dns_search", string_list(host.dns_search)},
          {"extra_hosts", string_list(host.extra_hosts)},
          {"links", links_json(host.links)}};
}

Result<HostConfig> host_config_from_json(const Json& json) {
  HostConfig host;
  host.auto_remove = json.value("auto_remove", false);
  Json policy = read_object(json, "restart_policy");
  auto restart =
      make_restart_policy(policy.value("name", "no"), policy.value("maximum_retry_count", int64_t{0}));
  if (!restart) return restart.error().with_context("stored container record");
  host.restart_policy = *restart;
  host.memory_bytes = json.value("memory_bytes", uint64_t{0});
  host.nano_cpus = json.value("nano_cpus", uint64_t{0});
  host.cpu_count = json.value("cpu_count", 0U);
  host.cap_add = read_string_list(json, "cap_add");
  host.cap_drop = read_string_list(json, "cap_drop");
  host.privileged = json.value("privileged", false);
  host.read_only_root = json.value("read_only_root", false);
  host.init = json.value("init", false);
  Json log = read_object(json, "log_config");
  host.log_config.type = log.value("type", "json-file");
  host.log_config.options = read_string_map(log, "options");
  host.network_mode = json.value("network_mode", "default");
  host.dns = read_string_list(json, "dns");
  host.dns_options = read_string_list(json, "dns_options");
  host.dns_search = read_string_list(json, "dns_search");
  host.extra_hosts = read_string_list(json, "extra_hosts");
  if (auto links = json.find("links"); links != json.end() && links->is_array()) {
    for (const Json& link : *links) {
      if (!link.is_object()) continue;
      host.links.push_back({.container = link.value("container", ""),
                            .name = link.value("name", ""),
                            .alias = link.value("alias", "")});
    }
  }
  host.mounts = mounts_from_json(json);
  return host;
}

}  // namespace

std::string_view to_string(MountPoint::Type type) {
  for (auto [value, name] : kMountTypeNames) {
    if (value == type) return name;
  }
  return "bind";
}

std::string_view to_string(ContainerState state) {
  for (auto [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "dead";
}

std::optional<ContainerState> container_state_from_string(std::string_view text) {
  for (auto [value, name] : kStateNames) {
    if (name == text) return value;
  }
  return std::nullopt;
}

std::string_view to_string(RestartPolicy::Kind kind) {
  for (auto [value, name] : kPolicyNames) {
    if (value == kind) return name;
  }
  return "no";
}

Result<RestartPolicy> make_restart_policy(std::string_view name, int64_t maximum_retry_count) {
  // moby's ValidateRestartPolicy: a retry count only with on-failure, never negative.
  if (name.empty()) name = "no";
  for (auto [kind, kind_name] : kPolicyNames) {
    if (kind_name != name) continue;
    if (kind == RestartPolicy::Kind::kOnFailure) {
      if (maximum_retry_count < 0) return Error::invalid_argument("maximum retry count cannot be negative");
      if (maximum_retry_count > std::numeric_limits<unsigned>::max())
        return Error::invalid_argument(
            fmt::format("maximum retry count {} is too large", maximum_retry_count));
      return RestartPolicy{kind, static_cast<unsigned>(maximum_retry_count)};
    }
    if (maximum_retry_count != 0)
      return Error::invalid_argument(
          fmt::format("maximum retry count cannot be used with restart policy '{}'", name));
    return RestartPolicy{kind, 0};
  }
  return Error::invalid_argument(fmt::format("invalid restart policy '{}'", name));
}
namespace {

Json networks_to_json(const std::vector<NetworkEndpointConfig>& networks) {
  Json list = Json::array();
  for (const NetworkEndpointConfig& endpoint : networks) {
    list.push_back({{"network", endpoint.network},
                    {"network_id", endpoint.network_id},
                    {"aliases", string_list(endpoint.aliases)},
                    {"ipv4", endpoint.ipv4},
                    {"mac", endpoint.mac},
                    {"links", string_list(endpoint.links)}});
  }
  return list;
}

std::vector<NetworkEndpointConfig> networks_from_json(const Json& json) {
  std::vector<NetworkEndpointConfig> networks;
  auto it = json.find("networks");
  if (it == json.end() || !it->is_array()) return networks;
  for (const Json& item : *it) {
    if (!item.is_object()) continue;
    networks.push_back({.network = item.value("network", ""),
                        .network_id = item.value("network_id", ""),
                        .aliases = read_string_list(item, "aliases"),
                        .ipv4 = item.value("ipv4", ""),
                        .mac = item.value("mac", ""),
                        .links = read_string_list(item, "links")});
  }
  return networks;
}

}  // namespace

Json to_storage_json(const ContainerRecord& container) {
  return {{"id", container.id},
          {"name", container.name},
          {"created", container.created},
          {"config", config_to_json(container.config)},
          {"host_config", host_config_to_json(container.host_config)},
          {"raw_config", container.raw_config},
          {"raw_host_config", container.raw_host_config},
          {"raw_networking_config", container.raw_networking_config},
          {"vm_id", container.vm_id},
          {"networks", networks_to_json(container.networks)},
          {"ports", ports_to_storage_json(container.ports)},
          {"state", to_string(container.state)},
          {"exit_code", container.exit_code},
          {"error", container.error},
          {"oom_killed", container.oom_killed},
          {"pid", container.pid},
          {"started_at", container.started_at},
          {"finished_at", container.finished_at},
          {"restart_count", container.restart_count},
          {"main_process", container.main_process},
          {"stopped_by_user", container.stopped_by_user},
          {"link_env", string_list(container.link_env)}};
}

namespace {

Result<ContainerRecord> read_container(const Json& json) {
  ContainerRecord container;
  container.id = json.value("id", "");
  container.name = json.value("name", "");
  if (container.id.empty() || container.name.empty())
    return Error::internal("stored container record lacks an id or name");
  container.created = json.value("created", "");
  container.config = config_from_json(read_object(json, "config"));
  container.host_config = KILN_TRY(host_config_from_json(read_object(json, "host_config")));
  container.raw_config = read_object(json, "raw_config");
  container.raw_host_config = read_object(json, "raw_host_config");
  container.raw_networking_config = read_object(json, "raw_networking_config");
  container.vm_id = json.value("vm_id", "");
  container.networks = networks_from_json(json);
  container.ports = ports_from_storage_json(json, "ports");
  std::string state = json.value("state", "");
  auto parsed = container_state_from_string(state);
  if (!parsed)
    return Error::internal(fmt::format("stored container {} has an unknown state '{}'", container.id, state));
  container.state = *parsed;
  container.exit_code = json.value("exit_code", 0);
  container.error = json.value("error", "");
  container.oom_killed = json.value("oom_killed", false);
  container.pid = json.value("pid", int64_t{0});
  container.started_at = json.value("started_at", "");
  container.finished_at = json.value("finished_at", "");
  container.restart_count = json.value("restart_count", 0U);
  container.main_process = json.value("main_process", 0U);
  container.stopped_by_user = json.value("stopped_by_user", false);
  container.link_env = read_string_list(json, "link_env");
  return container;
}

}  // namespace

Result<ContainerRecord> container_from_storage_json(const Json& json) {
  if (!json.is_object()) return Error::internal("stored container record is not an object");
  // Json::value throws on a field of the wrong type: a damaged row is an error, not a crash of kilnd.
  try {
    return read_container(json);
  } catch (const Json::exception& error) {
    return Error::internal(fmt::format("stored container record: {}", error.what()));
  }
}

}  // namespace kiln::daemon::containers

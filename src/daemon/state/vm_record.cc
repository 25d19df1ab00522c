#include "daemon/state/vm_record.h"

#include <fmt/format.h>

#include <ctime>

namespace kiln::daemon {
namespace {

constexpr std::pair<VmState, std::string_view> kStateNames[] = {
    {VmState::kCreating, "creating"},     {VmState::kStopped, "stopped"},
    {VmState::kStarting, "starting"},     {VmState::kRunning, "running"},
    {VmState::kPaused, "paused"},         {VmState::kStopping, "stopping"},
    {VmState::kSuspending, "suspending"}, {VmState::kSuspended, "suspended"},
    {VmState::kError, "error"},
};

constexpr std::pair<RootSource::Kind, std::string_view> kSourceNames[] = {
    {RootSource::Kind::kDefault, "default"}, {RootSource::Kind::kDirectory, "directory"},
    {RootSource::Kind::kTarball, "tarball"}, {RootSource::Kind::kImage, "image"},
    {RootSource::Kind::kVm, "vm"},           {RootSource::Kind::kContainer, "container"},
};

Json strings_json(const std::vector<std::string>& values) {
  Json out = Json::array();
  for (const auto& value : values) out.push_back(value);
  return out;
}

std::vector<std::string> strings_from(const Json& json, std::string_view key) {
  std::vector<std::string> out;
  if (auto values = json.find(key); values != json.end() && values->is_array()) {
    for (const auto& value : *values) {
      if (value.is_string()) out.push_back(value.get<std::string>());
    }
  }
  return out;
}

}  // namespace

Json ports_to_storage_json(const std::vector<PortPublication>& ports) {
  Json out = Json::array();
  for (const auto& port : ports) {
    out.push_back({{"protocol", port.protocol},
                   {"host_ip", port.host_ip},
                   {"host_port", port.host_port},
                   {"guest_port", port.guest_port}});
    if (port.host_port_last > port.host_port) out.back()["host_port_last"] = port.host_port_last;
  }
  return out;
}

std::vector<PortPublication> ports_from_storage_json(const Json& json, std::string_view key) {
  std::vector<PortPublication> out;
  if (auto ports = json.find(key); ports != json.end() && ports->is_array()) {
    for (const auto& port : *ports) {
      if (!port.is_object()) continue;
      out.push_back({.protocol = port.value("protocol", "tcp"),
                     .host_ip = port.value("host_ip", ""),
                     .host_port = port.value("host_port", uint16_t{0}),
                     .guest_port = port.value("guest_port", uint16_t{0}),
                     .host_port_last = port.value("host_port_last", uint16_t{0})});
    }
  }
  return out;
}

std::string_view to_string(VmState state) {
  for (auto [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

std::optional<VmState> vm_state_from_string(std::string_view text) {
  for (auto [value, name] : kStateNames) {
    if (name == text) return value;
  }
  return std::nullopt;
}

bool has_monitor(VmState state) {
  return state == VmState::kStarting || state == VmState::kRunning || state == VmState::kPaused ||
         state == VmState::kStopping || state == VmState::kSuspending;
}

std::string_view to_string(RootSource::Kind kind) {
  for (auto [value, name] : kSourceNames) {
    if (value == kind) return name;
  }
  return "default";
}

Json to_storage_json(const VmRecord& vm) {
  Json networks = Json::array();
  for (const auto& network : vm.networks) {
    networks.push_back({{"network", network.network},
                        {"ipv4", network.ipv4},
                        {"aliases", strings_json(network.aliases)},
                        {"mac", network.mac}});
  }
  Json nics = Json::array();
  for (const auto& nic : vm.nics) {
    nics.push_back({{"network_id", nic.network_id},
                    {"network_name", nic.network_name},
                    {"endpoint_id", nic.endpoint_id},
                    {"bridge", nic.bridge},
                    {"mac", nic.mac},
                    {"ipv4", nic.ipv4},
                    {"prefix_length", nic.prefix_length},
                    {"gateway", nic.gateway},
                    {"dns", strings_json(nic.dns)},
                    {"aliases", strings_json(nic.aliases)},
                    {"slot", nic.slot}});
  }
  Json folders = Json::array();
  for (const auto& folder : vm.folders) {
    folders.push_back({{"id", folder.id},
                       {"host_path", folder.host_path},
                       {"guest_path", folder.guest_path},
                       {"read_only", folder.read_only},
                       {"flags", folder.flags}});
  }
  Json mounts = Json::array();
  for (const auto& mount : vm.container_mounts) {
    mounts.push_back({{"kind", mount.kind == ContainerMount::Kind::kTmpfs ? "tmpfs" : "host-path"},
                      {"host_path", mount.host_path},
                      {"destination", mount.destination},
                      {"read_only", mount.read_only},
                      {"copy_up", mount.copy_up},
                      {"options", mount.options}});
  }
  Json timings = Json::array();
  for (const auto& [step, ms] : vm.start_timings) timings.push_back({{"step", step}, {"ms", ms}});
  return {{"id", vm.id},
          {"name", vm.name},
          {"cpus", vm.cpus},
          {"memory_mib", vm.memory_mib},
          {"disk_mib", vm.disk_mib},
          {"source", {{"kind", to_string(vm.source.kind)}, {"value", vm.source.value}}},
          {"kernel", vm.kernel},
          {"labels", vm.labels},
          {"tag", vm.tag},
          {"folders", folders},
          {"folders_enabled", vm.folders_enabled},
          {"owner", vm.owner},
          {"image_rootfs", vm.image_rootfs},
          {"container_mounts", mounts},
          {"networks", networks},
          {"ports", ports_to_storage_json(vm.ports)},
          {"nics", nics},
          {"nic_taps", strings_json(vm.nic_taps)},
          {"published", ports_to_storage_json(vm.published)},
          {"state", to_string(vm.state)},
          {"state_reason", vm.state_reason},
          {"monitor_pid", vm.monitor_pid},
          {"created_at", vm.created_at},
          {"started_at", vm.started_at},
          {"finished_at", vm.finished_at},
          {"start_mode", vm.start_mode},
          {"template_key", vm.template_key},
          {"start_pooled", vm.start_pooled},
          {"start_timings", timings}};
}

Result<VmRecord> vm_from_storage_json(const Json& json) {
  if (!json.is_object()) return Error::internal("stored VM record is not an object");
  VmRecord vm;
  vm.id = json.value("id", "");
  vm.name = json.value("name", "");
  vm.cpus = json.value("cpus", 1U);
  vm.memory_mib = json.value("memory_mib", uint64_t{512});
  vm.disk_mib = json.value("disk_mib", uint64_t{1024});
  if (auto source = json.find("source"); source != json.end() && source->is_object()) {
    std::string kind = source->value("kind", "default");
    for (auto [value, name] : kSourceNames) {
      if (name == kind) vm.source.kind = value;
    }
    vm.source.value = source->value("value", "");
  }
  vm.kernel = json.value("kernel", "");
  if (auto labels = json.find("labels"); labels != json.end() && labels->is_object()) {
    for (const auto& [key, value] : labels->items()) {
      if (value.is_string()) vm.labels[key] = value.get<std::string>();
    }
  }
  vm.tag = json.value("tag", "");
  if (auto folders = json.find("folders"); folders != json.end() && folders->is_array()) {
    for (const auto& folder : *folders) {
      vm.folders.push_back({.id = folder.value("id", ""),
                            .host_path = folder.value("host_path", ""),
                            .guest_path = folder.value("guest_path", ""),
                            .read_only = folder.value("read_only", false),
                            .flags = folder.value("flags", int64_t{0})});
    }
  }
  vm.folders_enabled = json.value("folders_enabled", true);
  vm.owner = json.value("owner", "");
  vm.image_rootfs = json.value("image_rootfs", "");
  if (auto mounts = json.find("container_mounts"); mounts != json.end() && mounts->is_array()) {
    for (const auto& mount : *mounts) {
      vm.container_mounts.push_back({.kind = mount.value("kind", "") == "tmpfs"
                                                 ? ContainerMount::Kind::kTmpfs
                                                 : ContainerMount::Kind::kHostPath,
                                     .host_path = mount.value("host_path", ""),
                                     .destination = mount.value("destination", ""),
                                     .read_only = mount.value("read_only", false),
                                     .copy_up = mount.value("copy_up", false),
                                     .options = mount.value("options", "")});
    }
  }
  if (auto networks = json.find("networks"); networks != json.end() && networks->is_array()) {
    for (const auto& network : *networks) {
      if (!network.is_object()) continue;
      vm.networks.push_back({.network = network.value("network", ""),
                             .ipv4 = network.value("ipv4", ""),
                             .aliases = strings_from(network, "aliases"),
                             .mac = network.value("mac", "")});
    }
  }
  vm.ports = ports_from_storage_json(json, "ports");
  if (auto nics = json.find("nics"); nics != json.end() && nics->is_array()) {
    for (const auto& nic : *nics) {
      if (!nic.is_object()) continue;
      vm.nics.push_back({.network_id = nic.value("network_id", ""),
                         .network_name = nic.value("network_name", ""),
                         .endpoint_id = nic.value("endpoint_id", ""),
                         .bridge = nic.value("bridge", ""),
                         .mac = nic.value("mac", ""),
                         .ipv4 = nic.value("ipv4", ""),
                         .prefix_length = nic.value("prefix_length", 0),
                         .gateway = nic.value("gateway", ""),
                         .dns = strings_from(nic, "dns"),
                         .aliases = strings_from(nic, "aliases"),
                         .slot = nic.value("slot", vm.nics.size())});  // before slots: in order
    }
  }
  vm.nic_taps = strings_from(json, "nic_taps");
  vm.published = ports_from_storage_json(json, "published");
  auto state = vm_state_from_string(json.value("state", "error"));
  vm.state = state.value_or(VmState::kError);
  vm.state_reason = json.value("state_reason", "");
  vm.monitor_pid = json.value("monitor_pid", int64_t{0});
  vm.created_at = json.value("created_at", "");
  vm.started_at = json.value("started_at", "");
  vm.finished_at = json.value("finished_at", "");
  vm.start_mode = json.value("start_mode", "");
  vm.template_key = json.value("template_key", "");
  vm.start_pooled = json.value("start_pooled", false);
  if (auto timings = json.find("start_timings"); timings != json.end() && timings->is_array()) {
    for (const auto& step : *timings) {
      if (step.is_object()) vm.start_timings.emplace_back(step.value("step", ""), step.value("ms", 0.0));
    }
  }
  if (vm.id.empty() || vm.name.empty()) return Error::internal("stored VM record lacks an id or name");
  return vm;
}

}  // namespace kiln::daemon

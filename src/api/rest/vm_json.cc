#include "api/rest/vm_json.h"

#include <fmt/format.h>

#include <array>

#include "common/units.h"

namespace kiln::api::rest {
namespace {

using daemon::RootSource;

Result<std::optional<uint64_t>> optional_count(const Json& body, std::string_view key, uint64_t min) {
  auto value = KILN_TRY(optional_int(body, key));
  if (!value) return std::optional<uint64_t>();
  if (*value < static_cast<int64_t>(min)) {
    return Error::invalid_argument(fmt::format("{} must be at least {}, not {}", key, min, *value));
  }
  return std::optional<uint64_t>(static_cast<uint64_t>(*value));
}

Result<std::map<std::string, std::string>> parse_labels(const Json& labels) {
  if (!labels.is_object()) return Error::invalid_argument("labels must be an object of strings");
  std::map<std::string, std::string> parsed;
  for (const auto& [key, value] : labels.items()) {
    if (!value.is_string()) return Error::invalid_argument(fmt::format("label {} must be a string", key));
    if (key.empty()) return Error::invalid_argument("a label needs a key");
    parsed[key] = value.get<std::string>();
  }
  return parsed;
}

Result<RootSource> parse_source(const Json& source) {
  if (source.is_null()) return RootSource{};
  if (!source.is_object() || source.size() != 1) {
    return Error::invalid_argument(
        "source must be an object with exactly one of directory, tarball, image or vm");
  }
  static constexpr std::pair<std::string_view, RootSource::Kind> kKinds[] = {
      {"directory", RootSource::Kind::kDirectory},
      {"tarball", RootSource::Kind::kTarball},
      {"image", RootSource::Kind::kImage},
      {"vm", RootSource::Kind::kVm}};
  auto entry = source.begin();
  const std::string& key = entry.key();
  const Json& value = entry.value();
  for (auto [name, kind] : kKinds) {
    if (name != key) continue;
    if (!value.is_string() || value.get<std::string>().empty()) {
      return Error::invalid_argument(fmt::format("source.{} must be a non-empty string", key));
    }
    return RootSource{.kind = kind, .value = value.get<std::string>()};
  }
  return Error::invalid_argument(
      fmt::format("unknown source kind \"{}\" (use directory, tarball, image or vm)", key));
}

}  // namespace

Json folder_to_json(const daemon::SharedFolder& folder) {
  return {{"id", folder.id},
          {"host_path", folder.host_path},
          {"guest_path", folder.guest_path},
          {"read_only", folder.read_only}};
}

namespace {

// How the VM last started: boot or fork, its template, and where the time went.
Json start_json(const daemon::VmRecord& vm) {
  Json timings = Json::object();
  for (const auto& [step, ms] : vm.start_timings) timings[step] = ms;
  Json start = {{"mode", vm.start_mode.empty() ? Json(nullptr) : Json(vm.start_mode)},
                {"timings_ms", timings}};
  if (!vm.template_key.empty()) start["template"] = vm.template_key;
  if (vm.start_mode == "fork") start["pooled"] = vm.start_pooled;
  return start;
}

Json ports_json(const std::vector<daemon::PortPublication>& ports) {
  Json out = Json::array();
  for (const auto& port : ports) {
    out.push_back({{"protocol", port.protocol},
                   {"host_ip", port.host_ip.empty() ? "0.0.0.0" : port.host_ip},
                   {"host_port", port.host_port},
                   {"guest_port", port.guest_port}});
  }
  return out;
}

Json networks_json(const daemon::VmRecord& vm) {
  Json out = Json::array();
  for (size_t i = 0; i < vm.networks.size(); ++i) {
    Json item = {{"network", vm.networks[i].network}};
    if (!vm.networks[i].ipv4.empty())
      item["ipv4"] = vm.networks[i].ipv4;  // asked for; the NIC's once running
    if (i < vm.nics.size()) {
      const daemon::VmNic& nic = vm.nics[i];
      item["network_id"] = nic.network_id;
      item["ipv4"] = nic.ipv4;
      item["prefix_length"] = nic.prefix_length;
      item["gateway"] = nic.gateway;
      item["mac"] = nic.mac;
    }
    out.push_back(std::move(item));
  }
  return out;
}

}  // namespace

Json addresses_json(const daemon::VmRecord& vm) {
  Json out = Json::array();
  for (const auto& nic : vm.nics) out.push_back(nic.ipv4);
  return out;
}

Result<std::vector<daemon::PortPublication>> parse_ports(const Json& body) {
  std::vector<daemon::PortPublication> out;
  if (!body.is_array()) return Error::invalid_argument("ports must be an array");
  for (const auto& item : body) {
    if (!item.is_object()) return Error::invalid_argument("each port must be an object");
    static constexpr std::array<std::string_view, 4> kAllowed = {"protocol", "host_ip", "host_port",
                                                                 "guest_port"};
    KILN_TRY(reject_unknown_fields(item, kAllowed));
    daemon::PortPublication port;
    port.protocol = KILN_TRY(optional_string(item, "protocol")).value_or("tcp");
    if (port.protocol != "tcp" && port.protocol != "udp")
      return Error::invalid_argument(fmt::format("port protocol {:?}: tcp or udp", port.protocol));
    port.host_ip = KILN_TRY(optional_string(item, "host_ip")).value_or("");
    auto guest = KILN_TRY(optional_count(item, "guest_port", 1));
    if (!guest || *guest > 65535) return Error::invalid_argument("guest_port must be 1-65535");
    port.guest_port = static_cast<uint16_t>(*guest);
    auto host = KILN_TRY(optional_count(item, "host_port", 0)).value_or(0);
    if (host > 65535) return Error::invalid_argument("host_port must be 0-65535 (0: any free port)");
    port.host_port = static_cast<uint16_t>(host);
    out.push_back(port);
  }
  return out;
}

Json vm_to_json(const daemon::VmRecord& vm) {
  Json folders = Json::array();
  for (const auto& folder : vm.folders) folders.push_back(folder_to_json(folder));
  Json source = Json::object();
  if (vm.source.kind != RootSource::Kind::kDefault)
    source[std::string(to_string(vm.source.kind))] = vm.source.value;
  return {{"id", vm.id},
          {"name", vm.name},
          {"state", to_string(vm.state)},
          {"state_reason", vm.state_reason},
          {"cpus", vm.cpus},
          {"memory_mib", vm.memory_mib},
          {"disk_mib", vm.disk_mib},
          {"source", source},
          {"kernel", vm.kernel},
          {"labels", vm.labels},
          {"tag", vm.tag},
          {"shared_folders", folders},
          {"shared_folders_enabled", vm.folders_enabled},
          {"addresses", addresses_json(vm)},
          {"networks", networks_json(vm)},
          {"ports", ports_json(vm.state == daemon::VmState::kRunning || vm.state == daemon::VmState::kPaused
                                   ? vm.published
                                   : vm.ports)},
          {"monitor_pid", vm.monitor_pid},
          {"created_at", vm.created_at},
          {"started_at", vm.started_at},
          {"finished_at", vm.finished_at},
          {"start", start_json(vm)}};
}

Result<daemon::SharedFolder> parse_shared_folder(const Json& body) {
  static constexpr std::array<std::string_view, 3> kAllowed = {"host_path", "guest_path", "read_only"};
  KILN_TRY(reject_unknown_fields(body, kAllowed));
  daemon::SharedFolder folder;
  folder.host_path = KILN_TRY(required_string(body, "host_path"));
  folder.guest_path = KILN_TRY(required_string(body, "guest_path"));
  folder.read_only = KILN_TRY(optional_bool(body, "read_only")).value_or(false);
  return folder;
}

Result<daemon::CreateVmRequest> parse_create_vm(const Json& body) {
  static constexpr std::array<std::string_view, 12> kAllowed = {
      "name",   "cpus",           "memory_mib", "disk_mib", "source",   "kernel",
      "labels", "shared_folders", "tag",        "image",    "networks", "ports"};
  KILN_TRY(reject_unknown_fields(body, kAllowed));
  daemon::CreateVmRequest request;
  request.name = KILN_TRY(optional_string(body, "name")).value_or("");
  if (auto cpus = KILN_TRY(optional_count(body, "cpus", 1))) {
    if (*cpus > 1024) return Error::invalid_argument(fmt::format("cpus {} is not a sensible number", *cpus));
    request.cpus = static_cast<unsigned>(*cpus);
  }
  request.memory_mib = KILN_TRY(optional_count(body, "memory_mib", 1));
  request.disk_mib = KILN_TRY(optional_count(body, "disk_mib", 1));
  if (auto source = body.find("source"); source != body.end())
    request.source = KILN_TRY(parse_source(*source));
  // "image": a shorthand for {"source": {"image": ...}} (kiln vm create --image).
  if (auto image = KILN_TRY(optional_string(body, "image"))) {
    if (request.source.kind != RootSource::Kind::kDefault) {
      return Error::invalid_argument("give either image or source, not both");
    }
    request.source = {.kind = RootSource::Kind::kImage, .value = *image};
  }
  request.kernel = KILN_TRY(optional_string(body, "kernel")).value_or("");
  if (auto labels = body.find("labels"); labels != body.end() && !labels->is_null()) {
    request.labels = KILN_TRY(parse_labels(*labels));
  }
  if (auto folders = body.find("shared_folders"); folders != body.end() && !folders->is_null()) {
    if (!folders->is_array()) return Error::invalid_argument("shared_folders must be an array");
    for (const auto& folder : *folders) request.folders.push_back(KILN_TRY(parse_shared_folder(folder)));
  }
  request.tag = KILN_TRY(optional_string(body, "tag")).value_or("");
  // "networks": names (or {"network", "ipv4"}) of the networks the VM's NICs join; [] for none.
  if (auto networks = body.find("networks"); networks != body.end() && !networks->is_null()) {
    if (!networks->is_array()) return Error::invalid_argument("networks must be an array");
    std::vector<daemon::VmNetworkRequest> list;
    for (const auto& item : *networks) {
      if (item.is_string()) {
        list.push_back({.network = item.get<std::string>()});
        continue;
      }
      if (!item.is_object()) return Error::invalid_argument("each network is a name or an object");
      static constexpr std::array<std::string_view, 2> kNetworkFields = {"network", "ipv4"};
      KILN_TRY(reject_unknown_fields(item, kNetworkFields));
      list.push_back({.network = KILN_TRY(required_string(item, "network")),
                      .ipv4 = KILN_TRY(optional_string(item, "ipv4")).value_or("")});
    }
    request.networks = std::move(list);
  }
  if (auto ports = body.find("ports"); ports != body.end() && !ports->is_null())
    request.ports = KILN_TRY(parse_ports(*ports));
  return request;
}

Result<daemon::UpdateVmRequest> parse_update_vm(const Json& body) {
  static constexpr std::array<std::string_view, 3> kAllowed = {"cpus", "memory_mib", "labels"};
  KILN_TRY(reject_unknown_fields(body, kAllowed));
  daemon::UpdateVmRequest request;
  if (auto cpus = KILN_TRY(optional_count(body, "cpus", 1))) {
    if (*cpus > 1024) return Error::invalid_argument(fmt::format("cpus {} is not a sensible number", *cpus));
    request.cpus = static_cast<unsigned>(*cpus);
  }
  request.memory_mib = KILN_TRY(optional_count(body, "memory_mib", 1));
  if (auto labels = body.find("labels"); labels != body.end() && !labels->is_null()) {
    request.labels = KILN_TRY(parse_labels(*labels));
  }
  return request;
}

Result<daemon::CloneVmRequest> parse_clone_vm(const Json& body) {
  daemon::CloneVmRequest request;
  if (body.is_null()) return request;
  static constexpr std::array<std::string_view, 2> kAllowed = {"name", "start"};
  KILN_TRY(reject_unknown_fields(body, kAllowed));
  request.name = KILN_TRY(optional_string(body, "name")).value_or("");
  request.start = KILN_TRY(optional_bool(body, "start")).value_or(true);
  return request;
}

Json template_to_json(const daemon::TemplateInfo& info) {
  Json json = {{"key", info.key},
               {"cpus", info.cpus},
               {"memory_mib", info.memory_mib},
               {"memory_bytes", info.memory_bytes},
               {"in_use", info.in_use},
               {"pooled", info.pooled},
               {"dir", info.dir}};
  if (!info.error.empty()) json["error"] = info.error;
  return json;
}

Result<WarmTemplateRequest> parse_warm_template(const Json& body) {
  if (body.is_null()) return WarmTemplateRequest{};
  static constexpr std::array<std::string_view, 2> kAllowed = {"cpus", "memory_mib"};
  KILN_TRY(reject_unknown_fields(body, kAllowed));
  WarmTemplateRequest request;
  if (auto cpus = KILN_TRY(optional_count(body, "cpus", 1))) {
    if (*cpus > 1024) return Error::invalid_argument(fmt::format("cpus {} is not a sensible number", *cpus));
    request.cpus = static_cast<unsigned>(*cpus);
  }
  request.memory_mib = KILN_TRY(optional_count(body, "memory_mib", 1));
  return request;
}

Result<daemon::ExecRequest> parse_exec(const Json& body) {
  static constexpr std::array<std::string_view, 8> kAllowed = {"cmd",   "env",  "workdir", "tty",
                                                               "stdin", "user", "rows",    "cols"};
  KILN_TRY(reject_unknown_fields(body, kAllowed));
  daemon::ExecRequest request;
  auto cmd = body.find("cmd");
  if (cmd == body.end() || !cmd->is_array() || cmd->empty()) {
    return Error::invalid_argument("cmd must be a non-empty array of strings");
  }
  for (const auto& arg : *cmd) {
    if (!arg.is_string()) return Error::invalid_argument("cmd must be a non-empty array of strings");
    request.process.argv.push_back(arg.get<std::string>());
  }
  if (auto env = body.find("env"); env != body.end() && !env->is_null()) {
    if (!env->is_array()) return Error::invalid_argument("env must be an array of KEY=VALUE strings");
    std::vector<std::string> entries = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    for (const auto& entry : *env) {
      if (!entry.is_string() || entry.get<std::string>().find('=') == std::string::npos) {
        return Error::invalid_argument("env must be an array of KEY=VALUE strings");
      }
      entries.push_back(entry.get<std::string>());
    }
    request.process.env = std::move(entries);
  }
  request.process.cwd = KILN_TRY(optional_string(body, "workdir")).value_or("");
  request.process.tty = KILN_TRY(optional_bool(body, "tty")).value_or(false);
  if (request.process.tty) {
    if (!request.process.env) {
      request.process.env =
          std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    }
    request.process.env->push_back("TERM=xterm");
  }
  request.attach_stdin = KILN_TRY(optional_bool(body, "stdin")).value_or(false);
  if (auto user = KILN_TRY(optional_string(body, "user"))) {
    // uid[:gid], numeric: the VM's user database is not the host's business. 4294967295 is (uid_t)-1,
    // which setresuid() reads as "leave unchanged": refused, like any other way of spelling -1.
    constexpr uint32_t kMaxId = UINT32_MAX - 1;
    std::string_view text = *user;
    auto colon = text.find(':');
    auto what = [&](std::string_view part) { return fmt::format("user \"{}\": the {}", *user, part); };
    request.process.uid = KILN_TRY(parse_unsigned<uint32_t>(text.substr(0, colon), what("uid"), 0, kMaxId));
    if (colon != std::string_view::npos)
      request.process.gid =
          KILN_TRY(parse_unsigned<uint32_t>(text.substr(colon + 1), what("gid"), 0, kMaxId));
  }
  auto rows = KILN_TRY(optional_count(body, "rows", 1));
  auto cols = KILN_TRY(optional_count(body, "cols", 1));
  if (rows) request.process.size.rows = static_cast<uint16_t>(std::min<uint64_t>(*rows, 65535));
  if (cols) request.process.size.cols = static_cast<uint16_t>(std::min<uint64_t>(*cols, 65535));
  return request;
}

}  // namespace kiln::api::rest

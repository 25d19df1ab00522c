#include "agent/protocol/messages.h"

#include <arpa/inet.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <limits>

#include "common/json.h"

namespace kiln::agent {

namespace {

// Every decode error names the message, so a peer's bug is easy to find in a log.
Result<Json> parse_object(std::string_view payload, std::string_view what) {
  auto parsed = parse_json(payload);
  if (!parsed || !parsed->is_object())
    return Error::protocol(fmt::format("{}: payload is not a JSON object", what));
  return std::move(parsed).value();
}

Error bad_field(std::string_view what, const Error& error) {
  return Error::protocol(fmt::format("{}: {}", what, error.message()));
}

Result<int64_t> int_in_range(const Json& object, std::string_view key, int64_t min, int64_t max,
                             std::string_view what) {
  auto value = optional_int(object, key);
  if (!value) return bad_field(what, value.error());
  if (!*value) return Error::protocol(fmt::format("{}: field \"{}\" is required", what, key));
  if (**value < min || **value > max) {
    return Error::protocol(fmt::format("{}: field \"{}\" must be in [{}, {}]", what, key, min, max));
  }
  return **value;
}

Result<std::optional<int64_t>> optional_int_in_range(const Json& object, std::string_view key, int64_t min,
                                                     int64_t max, std::string_view what) {
  auto value = optional_int(object, key);
  if (!value) return bad_field(what, value.error());
  if (*value && (**value < min || **value > max)) {
    return Error::protocol(fmt::format("{}: field \"{}\" must be in [{}, {}]", what, key, min, max));
  }
  return *value;
}

// Strings handed to execve() are C strings: an embedded NUL would silently cut them.
Result<std::vector<std::string>> string_array(const Json& value, std::string_view key,
                                              std::string_view what) {
  if (!value.is_array())
    return Error::protocol(fmt::format("{}: field \"{}\" must be an array of strings", what, key));
  std::vector<std::string> out;
  for (const Json& item : value) {
    if (!item.is_string()) {
      return Error::protocol(fmt::format("{}: field \"{}\" must be an array of strings", what, key));
    }
    std::string text = item.get<std::string>();
    if (text.find('\0') != std::string::npos) {
      return Error::protocol(fmt::format("{}: field \"{}\" contains a NUL byte", what, key));
    }
    out.push_back(std::move(text));
  }
  return out;
}

Json version_json(const ProtocolVersion& version) {
  return Json{{"major", version.major}, {"minor", version.minor}};
}

Result<ProtocolVersion> version_from(const Json& object, std::string_view what) {
  auto found = object.find("version");
  if (found == object.end() || !found->is_object()) {
    return Error::protocol(fmt::format("{}: field \"version\" must be an object", what));
  }
  constexpr int64_t kMax = std::numeric_limits<uint32_t>::max();
  ProtocolVersion version;
  version.major = static_cast<uint32_t>(KILN_TRY(int_in_range(*found, "major", 0, kMax, what)));
  version.minor = static_cast<uint32_t>(KILN_TRY(int_in_range(*found, "minor", 0, kMax, what)));
  return version;
}

struct CategoryName {
  ErrorCategory category;
  std::string_view name;
};
constexpr std::array<CategoryName, 12> kCategoryNames{{
    {ErrorCategory::kInvalidArgument, "invalid_argument"},
    {ErrorCategory::kNotFound, "not_found"},
    {ErrorCategory::kAlreadyExists, "already_exists"},
    {ErrorCategory::kFailedPrecondition, "failed_precondition"},
    {ErrorCategory::kPermissionDenied, "permission_denied"},
    {ErrorCategory::kUnavailable, "unavailable"},
    {ErrorCategory::kTimeout, "timeout"},
    {ErrorCategory::kCancelled, "cancelled"},
    {ErrorCategory::kProtocol, "protocol"},
    {ErrorCategory::kIo, "io"},
    {ErrorCategory::kUnsupported, "unsupported"},
    {ErrorCategory::kInternal, "internal"},
}};

// JSON strings must be UTF-8; nlohmann throws on anything else unless told to replace it. Argument bytes that
// are not UTF-8 therefore arrive as U+FFFD: a documented limit of the JSON control messages.
std::string dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A string handed to a system call (mount(2), mkdir(2)): an embedded NUL would silently cut it.
Result<std::string> c_string_field(const Json& object, std::string_view key, bool required,
                                   std::string_view what) {
  auto value = optional_string(object, key);
  if (!value) return bad_field(what, value.error());
  if (!*value) {
    if (required) return Error::protocol(fmt::format("{}: field \"{}\" is required", what, key));
    return std::string();
  }
  if ((*value)->find('\0') != std::string::npos) {
    return Error::protocol(fmt::format("{}: field \"{}\" contains a NUL byte", what, key));
  }
  return std::move(**value);
}

Json root_json(const RootDiskStatus& root) {
  Json out{{"serial", root.serial}, {"mounted", root.mounted}};
  if (!root.device.empty()) out["device"] = root.device;
  if (!root.mounted) out["error"] = root.error;
  return out;
}

Result<RootDiskStatus> root_from(const Json& value, std::string_view what) {
  if (!value.is_object()) return Error::protocol(fmt::format("{}: field \"root\" must be an object", what));
  RootDiskStatus root;
  root.serial = KILN_TRY(c_string_field(value, "serial", false, what));
  root.device = KILN_TRY(c_string_field(value, "device", false, what));
  root.error = KILN_TRY(c_string_field(value, "error", false, what));
  auto mounted = optional_bool(value, "mounted");
  if (!mounted) return bad_field(what, mounted.error());
  root.mounted = mounted->value_or(false);
  return root;
}

constexpr std::string_view kHexDigits = "0123456789abcdef";

std::string to_hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char byte : bytes) {
    auto value = static_cast<uint8_t>(byte);
    out.push_back(kHexDigits[value >> 4]);
    out.push_back(kHexDigits[value & 0xf]);
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    int high = hex_value(text[i]);
    int low = hex_value(text[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>((high << 4) | low));
  }
  return out;
}

Json mount_json(const MountRequest& message) {
  Json json{{"source", message.source},
            {"target", message.target},
            {"fstype", message.fstype},
            {"options", message.options},
            {"read_only", message.read_only}};
  // Only when used, so an older agent (which ignores unknown fields) is never asked for what it cannot do
  // without the host having checked the capability.
  if (!message.root.empty()) json["root"] = message.root;
  if (message.copy_up) json["copy_up"] = true;
  return json;
}

Result<MountRequest> mount_from(const Json& object, std::string_view what) {
  if (!object.is_object()) return Error::protocol(fmt::format("{}: a mount must be an object", what));
  MountRequest request;
  request.source = KILN_TRY(c_string_field(object, "source", true, what));
  request.target = KILN_TRY(c_string_field(object, "target", true, what));
  request.fstype = KILN_TRY(c_string_field(object, "fstype", true, what));
  request.options = KILN_TRY(c_string_field(object, "options", false, what));
  auto read_only = optional_bool(object, "read_only");
  if (!read_only) return bad_field(what, read_only.error());
  request.read_only = read_only->value_or(false);
  request.root = KILN_TRY(c_string_field(object, "root", false, what));
  auto copy_up = optional_bool(object, "copy_up");
  if (!copy_up) return bad_field(what, copy_up.error());
  request.copy_up = copy_up->value_or(false);
  if (request.copy_up && request.fstype != "bind")
    return Error::protocol(fmt::format("{}: \"copy_up\" is for fstype \"bind\" only", what));
  if (request.source.empty() || request.fstype.empty()) {
    return Error::protocol(fmt::format("{}: fields \"source\" and \"fstype\" must not be empty", what));
  }
  return request;
}

void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

std::string_view to_string(DataChannel channel) {
  switch (channel) {
    case DataChannel::kStdin:
      return "stdin";
    case DataChannel::kStdout:
      return "stdout";
    case DataChannel::kStderr:
      return "stderr";
  }
  return "unknown";
}

std::string_view wire_name(ErrorCategory category) {
  for (const auto& entry : kCategoryNames) {
    if (entry.category == category) return entry.name;
  }
  return "internal";
}

ErrorCategory category_from_wire_name(std::string_view name) {
  for (const auto& entry : kCategoryNames) {
    if (entry.name == name) return entry.category;
  }
  return ErrorCategory::kInternal;
}

std::string encode(const HelloRequest& message) {
  return dump(Json{{"version", version_json(message.version)}, {"peer", message.peer}});
}

std::string encode(const HelloReply& message) {
  Json out{{"version", version_json(message.version)},
           {"agent", message.agent},
           {"capabilities", message.capabilities}};
  if (message.root) out["root"] = root_json(*message.root);
  if (!message.kept_processes.empty()) out["kept_processes"] = message.kept_processes;
  return dump(out);
}

std::string encode(const ProcessSpec& message) {
  Json out{{"argv", message.argv}, {"cwd", message.cwd}, {"tty", message.tty}};
  if (message.env) out["env"] = *message.env;
  if (message.uid) out["uid"] = *message.uid;
  if (message.gid) out["gid"] = *message.gid;
  if (message.tty) {
    out["rows"] = message.size.rows;
    out["cols"] = message.size.cols;
  }
  if (message.keep_on_disconnect) out["keep_on_disconnect"] = true;
  if (message.container) {
    const ContainerSpec& container = *message.container;
    out["container"] = Json{{"root", container.root},
                            {"hostname", container.hostname},
                            {"capabilities", container.capabilities},
                            {"privileged", container.privileged},
                            {"read_only_root", container.read_only_root},
                            {"user", container.user}};
    if (!container.files.empty()) out["container"]["files"] = container.files;
    if (container.join != 0) out["container"]["join"] = container.join;
    if (container.init) out["container"]["init"] = true;
  }
  if (message.builtin) {
    out["builtin"] = Json{
        {"name", message.builtin->name}, {"args", message.builtin->args}, {"root", message.builtin->root}};
  }
  return dump(out);
}

std::string encode(const ProcessStarted& message) {
  return dump(Json{{"pid", message.pid}});
}

std::string encode(const ExitStatus& message) {
  if (message.is_signaled()) return dump(Json{{"signal", message.signal()}});
  return dump(Json{{"code", message.code()}});
}

std::string encode(const SignalRequest& message) {
  return dump(Json{{"signum", message.signum}});
}

std::string encode(const TtySize& message) {
  return dump(Json{{"rows", message.rows}, {"cols", message.cols}});
}

std::string encode(const ShutdownRequest& message) {
  return dump(Json{{"reboot", message.reboot}});
}

std::string encode(const ErrorReply& message) {
  return dump(Json{{"category", wire_name(message.category)}, {"message", message.message}});
}

std::string encode(const MountRequest& message) {
  return dump(mount_json(message));
}

std::string encode(const UnmountRequest& message) {
  return dump(Json{{"target", message.target}});
}

std::string encode(const SetClockRequest& message) {
  return dump(Json{{"unix_nanos", message.unix_nanos}});
}

std::string encode(const SetHostnameRequest& message) {
  return dump(Json{{"hostname", message.hostname}});
}

static Json interfaces_json(const std::vector<InterfaceConfig>& interfaces) {
  Json out = Json::array();
  for (const auto& config : interfaces) {
    Json item{{"mac", config.mac}, {"address", config.address}};
    if (!config.gateway.empty()) item["gateway"] = config.gateway;
    if (config.mtu != 0) item["mtu"] = config.mtu;
    if (!config.dns.empty()) item["dns"] = config.dns;
    if (!config.device_mac.empty()) item["device_mac"] = config.device_mac;
    if (config.default_route) item["default_route"] = *config.default_route;
    if (config.down) item["down"] = true;
    out.push_back(std::move(item));
  }
  return out;
}

std::string encode(const NetworkConfigRequest& message) {
  return dump(Json{{"interfaces", interfaces_json(message.interfaces)}});
}

std::string encode(const CloneInitRequest& message) {
  Json out{{"unix_nanos", message.unix_nanos}, {"reseed", message.reseed}};
  if (!message.hostname.empty()) out["hostname"] = message.hostname;
  if (!message.seed.empty()) out["seed"] = to_hex(message.seed);
  if (!message.machine_id.empty()) out["machine_id"] = message.machine_id;
  if (!message.network.empty()) out["network"] = interfaces_json(message.network);
  if (!message.mounts.empty()) {
    Json mounts = Json::array();
    for (const MountRequest& mount : message.mounts) mounts.push_back(mount_json(mount));
    out["mounts"] = std::move(mounts);
  }
  return dump(out);
}

std::string encode(const CloneInitReply& message) {
  Json steps = Json::array();
  for (const CloneInitStep& step : message.steps) steps.push_back(Json{{"step", step.step}, {"ms", step.ms}});
  return dump(Json{{"steps_ms", std::move(steps)}});
}

std::string format_clone_init_steps(const CloneInitReply& reply) {
  std::string out;
  for (const CloneInitStep& step : reply.steps) {
    if (!out.empty()) out += ' ';
    out += fmt::format("{}={:.1f}", step.step, step.ms);
  }
  return out;
}

std::string encode(const CreditGrant& message) {
  std::string out;
  out.push_back(static_cast<char>(message.channel));
  put_u32(out, message.bytes);
  return out;
}

std::string encode(const ReattachRequest& message) {
  Json out = Json::object();
  if (message.stdout_offset) out["stdout"] = *message.stdout_offset;
  if (message.stderr_offset) out["stderr"] = *message.stderr_offset;
  return dump(out);
}

Result<ReattachRequest> decode_reattach_request(std::string_view payload) {
  constexpr std::string_view kWhat = "REATTACH";
  ReattachRequest request;
  if (payload.empty()) return request;
  Json object = KILN_TRY(parse_object(payload, kWhat));
  for (auto [key, field] :
       {std::pair{"stdout", &request.stdout_offset}, std::pair{"stderr", &request.stderr_offset}}) {
    auto found = object.find(key);
    if (found == object.end() || found->is_null()) continue;
    if (!found->is_number_unsigned())
      return Error::protocol(fmt::format("REATTACH: {} must be a byte offset", key));
    *field = found->get<uint64_t>();
  }
  return request;
}

Result<HelloRequest> decode_hello_request(std::string_view payload) {
  constexpr std::string_view kWhat = "HELLO";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  HelloRequest message;
  message.version = KILN_TRY(version_from(object, kWhat));
  auto peer = optional_string(object, "peer");
  if (!peer) return bad_field(kWhat, peer.error());
  message.peer = peer->value_or("");
  return message;
}

Result<HelloReply> decode_hello_reply(std::string_view payload) {
  constexpr std::string_view kWhat = "HELLO_REPLY";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  HelloReply message;
  message.version = KILN_TRY(version_from(object, kWhat));
  auto agent = optional_string(object, "agent");
  if (!agent) return bad_field(kWhat, agent.error());
  message.agent = agent->value_or("");
  if (auto found = object.find("capabilities"); found != object.end()) {
    message.capabilities = KILN_TRY(string_array(*found, "capabilities", kWhat));
  }
  if (auto found = object.find("root"); found != object.end() && !found->is_null()) {
    message.root = KILN_TRY(root_from(*found, kWhat));
  }
  if (auto found = object.find("kept_processes"); found != object.end() && !found->is_null()) {
    if (!found->is_array()) return Error::protocol("HELLO_REPLY: kept_processes must be an array");
    for (const auto& id : *found) {
      if (!id.is_number_unsigned() || id.get<uint64_t>() == 0 || id.get<uint64_t>() > UINT32_MAX)
        return Error::protocol("HELLO_REPLY: kept_processes must hold process ids");
      message.kept_processes.push_back(static_cast<uint32_t>(id.get<uint64_t>()));
    }
  }
  return message;
}

namespace {

Result<ContainerSpec> container_from(const Json& json) {
  constexpr std::string_view kWhat = "RUN container";
  if (!json.is_object()) return Error::protocol("RUN: field \"container\" must be an object");
  ContainerSpec container;
  container.root = KILN_TRY(c_string_field(json, "root", true, kWhat));
  if (!container.root.starts_with('/'))
    return Error::protocol("RUN: container root must be an absolute path");
  container.hostname = KILN_TRY(c_string_field(json, "hostname", false, kWhat));
  if (container.hostname.size() > 64)
    return Error::protocol("RUN: container hostname is longer than 64 bytes");
  if (auto found = json.find("capabilities"); found != json.end() && !found->is_null()) {
    container.capabilities = KILN_TRY(string_array(*found, "capabilities", kWhat));
  }
  auto privileged = optional_bool(json, "privileged");
  if (!privileged) return bad_field(kWhat, privileged.error());
  container.privileged = privileged->value_or(false);
  auto read_only = optional_bool(json, "read_only_root");
  if (!read_only) return bad_field(kWhat, read_only.error());
  container.read_only_root = read_only->value_or(false);
  container.user = KILN_TRY(c_string_field(json, "user", false, kWhat));
  if (auto join =
          KILN_TRY(optional_int_in_range(json, "join", 0, std::numeric_limits<uint32_t>::max(), kWhat)))
    container.join = static_cast<uint32_t>(*join);
  auto init = optional_bool(json, "init");
  if (!init) return bad_field(kWhat, init.error());
  container.init = init->value_or(false);
  if (auto files = json.find("files"); files != json.end() && !files->is_null()) {
    if (!files->is_object()) return Error::protocol("RUN: container files must be an object");
    for (const auto& [path, content] : files->items()) {
      if (!content.is_string()) return Error::protocol("RUN: a container file's content must be a string");
      if (path.empty() || path.front() == '/' || path.find('\0') != std::string::npos)
        return Error::protocol(fmt::format("RUN: container file path \"{}\" must be relative", path));
      container.files[path] = content.get<std::string>();
    }
  }
  return container;
}

Result<BuiltinSpec> builtin_from(const Json& json) {
  constexpr std::string_view kWhat = "RUN builtin";
  if (!json.is_object()) return Error::protocol("RUN: field \"builtin\" must be an object");
  BuiltinSpec builtin;
  builtin.name = KILN_TRY(c_string_field(json, "name", true, kWhat));
  if (builtin.name.empty() || builtin.name.size() > 64 ||
      !std::all_of(builtin.name.begin(), builtin.name.end(),
                   [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; }))
    return Error::protocol("RUN: a builtin's name is lower-case letters and '-'");
  if (auto found = json.find("args"); found != json.end() && !found->is_null())
    builtin.args = KILN_TRY(string_array(*found, "args", kWhat));
  for (const auto& arg : builtin.args) {
    if (arg.find('\0') != std::string::npos)
      return Error::protocol("RUN: a builtin argument contains a NUL byte");
  }
  builtin.root = KILN_TRY(c_string_field(json, "root", false, kWhat));
  if (!builtin.root.empty() && !builtin.root.starts_with('/'))
    return Error::protocol("RUN: a builtin's root must be an absolute path");
  return builtin;
}

}  // namespace

Result<ProcessSpec> decode_process_spec(std::string_view payload) {
  constexpr std::string_view kWhat = "RUN";
  constexpr int64_t kMaxId = std::numeric_limits<uint32_t>::max() - 1;  // (uid_t)-1 means "unchanged"
  Json object = KILN_TRY(parse_object(payload, kWhat));
  ProcessSpec spec;
  if (auto found = object.find("builtin"); found != object.end() && !found->is_null())
    spec.builtin = KILN_TRY(builtin_from(*found));
  auto argv = object.find("argv");
  if (argv == object.end() && !spec.builtin) return Error::protocol("RUN: field \"argv\" is required");
  if (argv != object.end()) spec.argv = KILN_TRY(string_array(*argv, "argv", kWhat));
  if (!spec.builtin && (spec.argv.empty() || spec.argv[0].empty()))
    return Error::protocol("RUN: argv[0] must not be empty");
  if (auto env = object.find("env"); env != object.end() && !env->is_null()) {
    spec.env = KILN_TRY(string_array(*env, "env", kWhat));
    for (const auto& entry : *spec.env) {
      if (entry.find('=') == std::string::npos) {
        return Error::protocol(fmt::format("RUN: env entry \"{}\" is not KEY=VALUE", entry));
      }
    }
  }
  auto cwd = optional_string(object, "cwd");
  if (!cwd) return bad_field(kWhat, cwd.error());
  spec.cwd = cwd->value_or("");
  if (spec.cwd.find('\0') != std::string::npos)
    return Error::protocol("RUN: field \"cwd\" contains a NUL byte");
  if (auto uid = KILN_TRY(optional_int_in_range(object, "uid", 0, kMaxId, kWhat))) {
    spec.uid = static_cast<uint32_t>(*uid);
  }
  if (auto gid = KILN_TRY(optional_int_in_range(object, "gid", 0, kMaxId, kWhat))) {
    spec.gid = static_cast<uint32_t>(*gid);
  }
  auto tty = optional_bool(object, "tty");
  if (!tty) return bad_field(kWhat, tty.error());
  spec.tty = tty->value_or(false);
  if (auto rows = KILN_TRY(optional_int_in_range(object, "rows", 0, 65535, kWhat))) {
    spec.size.rows = static_cast<uint16_t>(*rows);
  }
  if (auto cols = KILN_TRY(optional_int_in_range(object, "cols", 0, 65535, kWhat))) {
    spec.size.cols = static_cast<uint16_t>(*cols);
  }
  if (auto found = object.find("container"); found != object.end() && !found->is_null()) {
    spec.container = KILN_TRY(container_from(*found));
  }
  auto keep = optional_bool(object, "keep_on_disconnect");
  if (!keep) return bad_field(kWhat, keep.error());
  spec.keep_on_disconnect = keep->value_or(false);
  if (spec.builtin && spec.container) return Error::protocol("RUN: a builtin cannot run as a container");
  return spec;
}

Result<ProcessStarted> decode_process_started(std::string_view payload) {
  constexpr std::string_view kWhat = "STARTED";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  return ProcessStarted{KILN_TRY(int_in_range(object, "pid", 0, std::numeric_limits<int32_t>::max(), kWhat))};
}

Result<ExitStatus> decode_exit_status(std::string_view payload) {
  constexpr std::string_view kWhat = "EXIT";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  if (object.contains("signal")) {
    return ExitStatus::signaled(static_cast<int>(KILN_TRY(int_in_range(object, "signal", 1, 127, kWhat))));
  }
  return ExitStatus::exited(static_cast<int>(KILN_TRY(int_in_range(object, "code", 0, 255, kWhat))));
}

Result<SignalRequest> decode_signal_request(std::string_view payload) {
  constexpr std::string_view kWhat = "SIGNAL";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  return SignalRequest{static_cast<int>(KILN_TRY(int_in_range(object, "signum", 1, SIGRTMAX, kWhat)))};
}

Result<TtySize> decode_tty_size(std::string_view payload) {
  constexpr std::string_view kWhat = "RESIZE";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  TtySize size;
  size.rows = static_cast<uint16_t>(KILN_TRY(int_in_range(object, "rows", 0, 65535, kWhat)));
  size.cols = static_cast<uint16_t>(KILN_TRY(int_in_range(object, "cols", 0, 65535, kWhat)));
  return size;
}

Result<ShutdownRequest> decode_shutdown_request(std::string_view payload) {
  constexpr std::string_view kWhat = "SHUTDOWN";
  if (payload.empty()) return ShutdownRequest{};
  Json object = KILN_TRY(parse_object(payload, kWhat));
  auto reboot = optional_bool(object, "reboot");
  if (!reboot) return bad_field(kWhat, reboot.error());
  return ShutdownRequest{reboot->value_or(false)};
}

Result<ErrorReply> decode_error_reply(std::string_view payload) {
  constexpr std::string_view kWhat = "ERROR";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  auto message = optional_string(object, "message");
  if (!message) return bad_field(kWhat, message.error());
  auto category = optional_string(object, "category");
  if (!category) return bad_field(kWhat, category.error());
  return ErrorReply{category_from_wire_name(category->value_or("internal")), message->value_or("")};
}

Result<CreditGrant> decode_credit_grant(std::string_view payload) {
  if (payload.size() != 5)
    return Error::protocol(fmt::format("CREDIT: payload must be 5 bytes, got {}", payload.size()));
  auto channel = static_cast<uint8_t>(payload[0]);
  if (channel > static_cast<uint8_t>(DataChannel::kStderr)) {
    return Error::protocol(fmt::format("CREDIT: unknown channel {}", channel));
  }
  uint32_t bytes = 0;
  for (int i = 3; i >= 0; --i) bytes = (bytes << 8) | static_cast<uint8_t>(payload[1 + i]);
  return CreditGrant{static_cast<DataChannel>(channel), bytes};
}

Result<MountRequest> decode_mount_request(std::string_view payload) {
  constexpr std::string_view kWhat = "MOUNT";
  return mount_from(KILN_TRY(parse_object(payload, kWhat)), kWhat);
}

Result<UnmountRequest> decode_unmount_request(std::string_view payload) {
  constexpr std::string_view kWhat = "UNMOUNT";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  return UnmountRequest{KILN_TRY(c_string_field(object, "target", true, kWhat))};
}

Result<SetClockRequest> decode_set_clock_request(std::string_view payload) {
  constexpr std::string_view kWhat = "SET_CLOCK";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  auto nanos = object.find("unix_nanos");
  if (nanos == object.end() || !nanos->is_number_integer() || nanos->get<int64_t>() <= 0) {
    return Error::invalid_argument("SET_CLOCK: unix_nanos must be a positive integer");
  }
  return SetClockRequest{nanos->get<int64_t>()};
}

Result<void> validate_hostname(std::string_view hostname) {
  auto valid_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  };
  bool ok_chars = std::all_of(hostname.begin(), hostname.end(), valid_char);
  if (hostname.empty() || hostname.size() > 64 || !ok_chars || hostname.front() == '-' ||
      hostname.front() == '.' || hostname.front() == '_') {
    return Error::invalid_argument(fmt::format(
        "invalid hostname \"{}\": 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        hostname));
  }
  return ok();
}

Result<SetHostnameRequest> decode_set_hostname_request(std::string_view payload) {
  constexpr std::string_view kWhat = "SET_HOSTNAME";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  std::string hostname = KILN_TRY(c_string_field(object, "hostname", true, kWhat));
  KILN_TRY(validate_hostname(hostname));
  return SetHostnameRequest{hostname};
}

Result<void> validate_machine_id(std::string_view machine_id) {
  bool lower_hex = std::all_of(machine_id.begin(), machine_id.end(),
                               [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (machine_id.size() != 32 || !lower_hex) {
    return Error::invalid_argument(
        fmt::format("invalid machine id \"{}\": must be 32 lower-case hex digits", machine_id));
  }
  return ok();
}

Result<void> validate_clone_seed(std::string_view seed) {
  if (seed.size() < kCloneSeedMinBytes || seed.size() > kCloneSeedMaxBytes) {
    return Error::invalid_argument(fmt::format("CLONE_INIT: the seed must be {} to {} bytes, got {}",
                                               kCloneSeedMinBytes, kCloneSeedMaxBytes, seed.size()));
  }
  return ok();
}

static Result<void> validate_mac(const std::string& mac) {
  unsigned octets[6];
  char tail = 0;
  if (mac.size() != 17 || std::sscanf(mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &octets[0], &octets[1],
                                      &octets[2], &octets[3], &octets[4], &octets[5], &tail) != 6)
    return Error::invalid_argument(fmt::format("invalid MAC address \"{}\"", mac));
  if ((octets[0] & 1U) != 0)
    return Error::invalid_argument(fmt::format("MAC address \"{}\" is a multicast address", mac));
  return ok();
}

Result<void> validate_interface_config(const InterfaceConfig& config) {
  if (!config.device_mac.empty()) KILN_TRY(validate_mac(config.device_mac));
  if (config.down) {
    if (config.device_mac.empty())
      return Error::invalid_argument("an interface taken down needs its device MAC");
    return ok();
  }
  KILN_TRY(validate_mac(config.mac));
  auto slash = config.address.find('/');
  in_addr address{};
  int prefix = -1;
  if (slash != std::string::npos) {
    std::string_view digits = std::string_view(config.address).substr(slash + 1);
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (error != std::errc() || end != digits.data() + digits.size()) prefix = -1;
  }
  if (slash == std::string::npos || prefix < 1 || prefix > 32 ||
      ::inet_pton(AF_INET, config.address.substr(0, slash).c_str(), &address) != 1)
    return Error::invalid_argument(
        fmt::format("invalid interface address \"{}\": want IPv4 address/prefix", config.address));
  if (!config.gateway.empty()) {
    in_addr gateway{};
    if (::inet_pton(AF_INET, config.gateway.c_str(), &gateway) != 1)
      return Error::invalid_argument(fmt::format("invalid gateway \"{}\"", config.gateway));
    uint32_t mask = prefix == 32 ? ~0U : ~(~0U >> prefix);
    if ((ntohl(gateway.s_addr) & mask) != (ntohl(address.s_addr) & mask))
      return Error::invalid_argument(
          fmt::format("gateway {} is outside the interface's subnet {}", config.gateway, config.address));
  }
  if (config.mtu != 0 && (config.mtu < 68 || config.mtu > 65535))
    return Error::invalid_argument(fmt::format("invalid MTU {}", config.mtu));
  return ok();
}

static Result<std::vector<InterfaceConfig>> interfaces_from(const Json& object, std::string_view key,
                                                            std::string_view what) {
  std::vector<InterfaceConfig> out;
  auto list = object.find(key);
  if (list == object.end() || list->is_null()) return out;
  if (!list->is_array()) return Error::protocol(fmt::format("{}: field \"{}\" must be an array", what, key));
  for (const Json& item : *list) {
    if (!item.is_object()) return Error::protocol(fmt::format("{}: \"{}\" must hold objects", what, key));
    // One field per statement: an early return out of a half-built aggregate leaks its members (GCC).
    InterfaceConfig config;
    auto down = optional_bool(item, "down");
    if (!down) return bad_field(what, down.error());
    config.down = down->value_or(false);
    config.mac = KILN_TRY(c_string_field(item, "mac", !config.down, what));
    config.address = KILN_TRY(c_string_field(item, "address", !config.down, what));
    config.device_mac = KILN_TRY(c_string_field(item, "device_mac", false, what));
    auto default_route = optional_bool(item, "default_route");
    if (!default_route) return bad_field(what, default_route.error());
    config.default_route = *default_route;
    config.gateway = KILN_TRY(c_string_field(item, "gateway", false, what));
    if (auto dns = item.find("dns"); dns != item.end() && !dns->is_null()) {
      if (!dns->is_array()) return Error::protocol(fmt::format("{}: \"dns\" must be an array", what));
      for (const Json& server : *dns) {
        in_addr parsed{};
        if (!server.is_string() || ::inet_pton(AF_INET, server.get<std::string>().c_str(), &parsed) != 1)
          return Error::invalid_argument(fmt::format("{}: \"dns\" must hold IPv4 addresses", what));
        config.dns.push_back(server.get<std::string>());
      }
    }
    if (auto mtu = item.find("mtu"); mtu != item.end()) {
      if (!mtu->is_number_unsigned() || mtu->get<uint64_t>() > 65535)
        return Error::invalid_argument(fmt::format("{}: \"mtu\" must be 68-65535", what));
      config.mtu = mtu->get<uint32_t>();
    }
    KILN_TRY_CONTEXT(validate_interface_config(config), fmt::format("{} interface {}", what, out.size()));
    out.push_back(std::move(config));
  }
  return out;
}

Result<NetworkConfigRequest> decode_network_config_request(std::string_view payload) {
  constexpr std::string_view kWhat = "CONFIGURE_NETWORK";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  return NetworkConfigRequest{.interfaces = KILN_TRY(interfaces_from(object, "interfaces", kWhat))};
}

Result<CloneInitRequest> decode_clone_init_request(std::string_view payload) {
  constexpr std::string_view kWhat = "CLONE_INIT";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  CloneInitRequest request;
  auto nanos = object.find("unix_nanos");
  if (nanos == object.end() || !nanos->is_number_integer() || nanos->get<int64_t>() <= 0) {
    return Error::invalid_argument("CLONE_INIT: unix_nanos must be a positive integer");
  }
  request.unix_nanos = nanos->get<int64_t>();
  request.hostname = KILN_TRY(c_string_field(object, "hostname", false, kWhat));
  if (!request.hostname.empty()) KILN_TRY(validate_hostname(request.hostname));
  auto reseed = optional_bool(object, "reseed");
  if (!reseed) return bad_field(kWhat, reseed.error());
  request.reseed = reseed->value_or(true);
  std::string seed_hex = KILN_TRY(c_string_field(object, "seed", false, kWhat));
  if (!seed_hex.empty() || request.reseed) {
    auto seed = from_hex(seed_hex);
    if (!seed) return Error::invalid_argument("CLONE_INIT: the seed must be hex digits, two per byte");
    KILN_TRY(validate_clone_seed(*seed));
    request.seed = std::move(*seed);
  }
  request.machine_id = KILN_TRY(c_string_field(object, "machine_id", false, kWhat));
  if (!request.machine_id.empty()) KILN_TRY(validate_machine_id(request.machine_id));
  request.network = KILN_TRY(interfaces_from(object, "network", kWhat));
  if (auto mounts = object.find("mounts"); mounts != object.end() && !mounts->is_null()) {
    if (!mounts->is_array()) return Error::protocol("CLONE_INIT: field \"mounts\" must be an array");
    for (const Json& mount : *mounts) {
      request.mounts.push_back(
          KILN_TRY(mount_from(mount, fmt::format("CLONE_INIT mount {}", request.mounts.size()))));
    }
  }
  return request;
}

Result<CloneInitReply> decode_clone_init_reply(std::string_view payload) {
  constexpr std::string_view kWhat = "CLONE_INIT_REPLY";
  Json object = KILN_TRY(parse_object(payload, kWhat));
  CloneInitReply reply;
  auto steps = object.find("steps_ms");
  if (steps == object.end() || steps->is_null()) return reply;
  if (!steps->is_array()) return Error::protocol("CLONE_INIT_REPLY: field \"steps_ms\" must be an array");
  for (const Json& step : *steps) {
    if (!step.is_object()) return Error::protocol("CLONE_INIT_REPLY: each step must be an object");
    auto ms = step.find("ms");
    if (ms == step.end() || !ms->is_number())
      return Error::protocol("CLONE_INIT_REPLY: a step's \"ms\" must be a number");
    reply.steps.push_back(
        {.step = KILN_TRY(c_string_field(step, "step", true, kWhat)), .ms = ms->get<double>()});
  }
  return reply;
}

Result<std::string> normalize_guest_path(std::string_view path, std::string_view what) {
  if (path.empty() || path.front() != '/') {
    return Error::invalid_argument(fmt::format("{} \"{}\": must be an absolute path", what, path));
  }
  std::string out;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return Error::invalid_argument(fmt::format("{} \"{}\": \"..\" is not allowed", what, path));
    }
    out.push_back('/');
    out.append(part);
  }
  if (out.empty()) {
    return Error::invalid_argument(fmt::format("{} \"{}\": cannot be the root directory", what, path));
  }
  return out;
}

}  // namespace kiln::agent

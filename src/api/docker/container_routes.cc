// /containers/... and /exec/...: kilnd's ContainerManager in the Docker Engine API's shapes, for `docker
// create|start|run|stop|kill|restart|wait|attach|logs|ps|inspect|rm|rename|pause|unpause|exec|container
// prune`. The work is the manager's (src/daemon/containers); this file only translates.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <thread>

#include "api/docker/container_json.h"
#include "api/docker/container_networks.h"
#include "api/docker/container_ports.h"
#include "api/docker/docker_routes.h"
#include "api/docker/filters.h"
#include "common/rfc3339.h"
#include "common/stdcopy.h"
#include "daemon/containers/signals.h"
#include "image/image_store.h"

namespace kiln::api::docker {
namespace {

using daemon::containers::AttachOptions;
using daemon::containers::ContainerRecord;
using daemon::containers::ContainerState;
using http::Reply;
using http::Request;

std::string id_param(const Request& request) {
  return std::string(request.param("id"));
}

// Docker's integer query parameters may be negative (stop ?t=-1 waits for ever).
Result<std::optional<int>> query_int(const Request& request, std::string_view key) {
  auto text = request.query.get(key);
  if (!text || text->empty()) return std::optional<int>();
  int value = 0;
  auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (error != std::errc() || end != text->data() + text->size())
    return Error::invalid_argument(fmt::format("invalid value for {}: {}", key, *text));
  return std::optional<int>(value);
}

Result<std::optional<int>> query_signal(const Request& request) {
  auto text = request.query.get("signal");
  if (!text || text->empty()) return std::optional<int>();
  return std::optional<int>(KILN_TRY(daemon::containers::parse_signal(*text)));
}

// since/until of /logs: Unix seconds with an optional fraction ("1700000000.123456789"), or RFC 3339.
Result<std::optional<std::chrono::system_clock::time_point>> query_time(const Request& request,
                                                                        std::string_view key) {
  auto text = request.query.get(key);
  if (!text || text->empty() || *text == "0") return std::optional<std::chrono::system_clock::time_point>();
  std::string_view value = *text;
  if (value.find('T') != std::string_view::npos) {
    auto parsed = parse_rfc3339_time(value);
    if (!parsed) return Error::invalid_argument(fmt::format("invalid value for {}: {}", key, value));
    return std::optional<std::chrono::system_clock::time_point>(*parsed);
  }
  size_t dot = value.find('.');
  int64_t seconds = 0;
  auto whole = value.substr(0, dot);
  auto [end, error] = std::from_chars(whole.data(), whole.data() + whole.size(), seconds);
  if (error != std::errc() || end != whole.data() + whole.size())
    return Error::invalid_argument(fmt::format("invalid value for {}: {}", key, value));
  int64_t nanos = 0;
  if (dot != std::string_view::npos) {
    std::string fraction(value.substr(dot + 1));
    fraction.resize(9, '0');
    auto [fraction_end, fraction_error] = std::from_chars(fraction.data(), fraction.data() + 9, nanos);
    if (fraction_error != std::errc() || fraction_end != fraction.data() + 9)
      return Error::invalid_argument(fmt::format("invalid value for {}: {}", key, value));
  }
  return std::optional<std::chrono::system_clock::time_point>(
      std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanos))));
}

Result<Json> json_body_or_null(const Request& request) {
  if (request.body.empty()) return Json(nullptr);
  auto parsed = parse_json(request.body);
  if (!parsed) return Error::invalid_argument(fmt::format("invalid JSON: {}", parsed.error().message()));
  return *parsed;
}

daemon::containers::NewContainer to_new_container(CreateContainerRequest request) {
  auto given = [&](const char* key) {
    auto found = request.raw_config.find(key);
    return found != request.raw_config.end() && !found->is_null();
  };
  daemon::containers::NewContainer out{.name = std::move(request.name),
                                       .config = std::move(request.config),
                                       .host_config = std::move(request.host_config),
                                       .entrypoint_given = given("Entrypoint"),
                                       .cmd_given = given("Cmd")};
  out.raw_config = std::move(request.raw_config);
  out.raw_host_config = std::move(request.raw_host_config);
  out.raw_networking_config = std::move(request.raw_networking_config);
  return out;
}

enum class PortsView { kInspect, kList };

// The container's ports as inspect's NetworkSettings.Ports or the list's Ports show them: its exposed ports,
// and while its VM runs the host ports it got.
Json container_ports_json(const ContainerRecord& container, const daemon::VmRecord* vm, PortsView view) {
  auto ports = parse_container_ports(container.raw_config, container.raw_host_config);
  std::vector<ContainerPort> exposed = ports ? ports->exposed : std::vector<ContainerPort>{};
  bool running = vm != nullptr && (container.state == daemon::containers::ContainerState::kRunning ||
                                   container.state == daemon::containers::ContainerState::kPaused);
  std::vector<daemon::PortPublication> published =
      running ? vm->published : std::vector<daemon::PortPublication>{};
  return view == PortsView::kInspect ? network_settings_ports(exposed, published, running)
                                     : ps_ports(exposed, published, running);
}

// The container's VM while it has one running (its NICs hold the container's addresses).
std::optional<daemon::VmRecord> container_vm(DockerContext& context, const ContainerRecord& container) {
  if (context.vms == nullptr || container.vm_id.empty()) return std::nullopt;
  auto vm = context.vms->inspect(container.vm_id);
  return vm ? std::optional<daemon::VmRecord>(*std::move(vm)) : std::nullopt;
}

ContainerInspectExtras inspect_extras(DockerContext& context, const ContainerRecord& container) {
  ContainerInspectExtras extras;
  if (container.host_config.log_config.type != "none")
    extras.log_path = context.containers.log_path(container.id);
  return extras;
}

Result<Reply> list_containers(DockerContext& context, const Request& request) {
  bool all = request.query.get_bool("all");
  auto limit = KILN_TRY(query_int(request, "limit")).value_or(-1);
  Filters filters = KILN_TRY(Filters::parse(request.query, container_filter_names()));
  auto containers = KILN_TRY(context.containers.list());
  auto lookup = [&](std::string_view reference) -> Result<ContainerOrder> {
    auto found = KILN_TRY(context.containers.inspect(std::string(reference)));
    return ContainerOrder{.id = found.id, .created = found.created};
  };
  auto ancestors = [&](std::string_view reference) {
    std::vector<std::string> ids;
    if (auto id = context.images.resolve(reference)) ids.push_back(id->to_string());
    return ids;
  };
  auto filter = KILN_TRY(parse_container_filters(filters, lookup, ancestors));
  // Newest first, as dockerd lists them.
  std::reverse(containers.begin(), containers.end());
  // A linked container is also known by its links' names ("/web/db"), as in dockerd's name registry.
  std::map<std::string, std::vector<std::string>> link_names;
  for (const auto& parent : containers) {
    for (const auto& link : parent.host_config.links) {
      if (!link.name.empty())
        link_names[link.container].push_back(fmt::format("/{}/{}", parent.name, link.alias));
    }
  }
  Json out = Json::array();
  auto now = std::chrono::system_clock::now();
  for (const auto& container : containers) {
    if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) break;
    if (!listed(filter, container, all, limit)) continue;
    ContainerSummaryExtras extras;
    if (auto it = link_names.find(container.id); it != link_names.end()) extras.link_names = it->second;
    out.push_back(container_summary_json(container, now, extras));
    if (context.networks != nullptr) {
      std::optional<daemon::VmRecord> vm = container_vm(context, container);
      out.back()["NetworkSettings"] = {{"Networks", container_networks_json(container, vm ? &*vm : nullptr)}};
      out.back()["Ports"] = container_ports_json(container, vm ? &*vm : nullptr, PortsView::kList);
    }
  }
  return Reply(http::json_response(200, out));
}

Result<Reply> create_container(DockerContext& context, const Request& request) {
  Json body = KILN_TRY(json_body_or_null(request));
  auto parsed =
      KILN_TRY(parse_create_container(body, request.query.get("name").value_or(""), context.host_cpus));
  // The image's EXPOSEd ports join the request's, as dockerd merges them (what -P publishes).
  if (auto image = context.images.inspect(parsed.config.image)) {
    const Json config = image->config.raw.value("config", Json::object());
    if (auto exposed = config.find("ExposedPorts"); exposed != config.end() && exposed->is_object()) {
      Json& merged = parsed.raw_config["ExposedPorts"];
      if (!merged.is_object()) merged = Json::object();
      for (const auto& [port, value] : exposed->items()) {
        if (!merged.contains(port)) merged[port] = value;
      }
    }
  }
  // Ports: checked at create with dockerd's rules (a bad spec is a 400 before anything exists).
  ContainerPorts ports = KILN_TRY(parse_container_ports(parsed.raw_config, parsed.raw_host_config));
  daemon::containers::NewContainer container = to_new_container(std::move(parsed));
  container.ports = port_publications(ports);
  if (context.networks != nullptr) {
    auto field = [&body](std::string_view name) {
      const Json* value = body.is_object() ? find_field(body, name) : nullptr;
      return value != nullptr ? *value : Json(nullptr);
    };
    apply_container_networking(KILN_TRY(parse_container_networking(
                                   field("HostConfig"), field("NetworkingConfig"), *context.networks)),
                               container.host_config, container.networks);
  }
  auto created = KILN_TRY(context.containers.create(std::move(container)));
  return Reply(http::json_response(201, {{"Id", created.id}, {"Warnings", Json::array()}}));
}

// Docker answers 304 Not Modified with no body when there was nothing to do.
Reply done_or_not_modified(bool done) {
  return Reply(http::empty_response(done ? 204 : 304));
}

Result<Reply> wait_container(DockerContext& context, const Request& request) {
  std::string condition_text(request.query.get("condition").value_or("not-running"));
  daemon::containers::WaitCondition condition;
  if (condition_text == "not-running" || condition_text.empty()) {
    condition = daemon::containers::WaitCondition::kNotRunning;
  } else if (condition_text == "next-exit") {
    condition = daemon::containers::WaitCondition::kNextExit;
  } else if (condition_text == "removed") {
    condition = daemon::containers::WaitCondition::kRemoved;
  } else {
    return Error::invalid_argument(fmt::format("invalid condition: \"{}\"", condition_text));
  }
  auto container = KILN_TRY(context.containers.inspect(id_param(request)));
  http::StreamReply reply;
  reply.headers.set("Content-Type", "application/json");
  // The head goes out at once (docker run waits on it before it starts the container); the body when done.
  reply.body = [&context, id = container.id, condition](http::ChunkWriter& writer) {
    auto code = context.containers.wait(id, condition, [&writer] { return writer.client_gone(); });
    Json out = {{"StatusCode", code ? *code : 0}, {"Error", nullptr}};
    if (!code) out["Error"] = {{"Message", code.error().message()}};
    (void)writer.write_chunk(out.dump() + "\n");
  };
  return Reply(std::move(reply));
}

Result<Reply> attach_container(DockerContext& context, const Request& request) {
  AttachOptions options{.stdin = request.query.get_bool("stdin"),
                        .stdout = request.query.get_bool("stdout"),
                        .stderr = request.query.get_bool("stderr"),
                        .logs = request.query.get_bool("logs"),
                        .stream = request.query.get_bool("stream")};
  if (auto keys = request.query.get("detachKeys"); keys && !keys->empty())
    options.detach_keys = KILN_TRY(daemon::containers::parse_detach_keys(*keys));
  auto container = KILN_TRY(context.containers.check_attach(id_param(request), options));
  http::HijackReply reply;
  reply.content_type = container.config.tty ? "application/vnd.docker.raw-stream"
                                            : "application/vnd.docker.multiplexed-stream";
  reply.body = [&context, id = container.id, options](http::RawConnection connection) {
    context.containers.attach(id, std::move(connection.fd), std::move(connection.buffered), options);
  };
  return Reply(std::move(reply));
}

Result<Reply> container_logs(DockerContext& context, const Request& request) {
  auto container = KILN_TRY(context.containers.inspect(id_param(request)));
  daemon::containers::LogReadOptions options{.show_stdout = request.query.get_bool("stdout"),
                                             .show_stderr = request.query.get_bool("stderr"),
                                             .follow = request.query.get_bool("follow")};
  if (!options.show_stdout && !options.show_stderr)
    return Error::invalid_argument("Bad parameters: you must choose at least one stream");
  if (container.host_config.log_config.type == "none")
    return Error::unsupported("configured logging driver does not support reading");
  options.since = KILN_TRY(query_time(request, "since"));
  options.until = KILN_TRY(query_time(request, "until"));
  if (auto tail = request.query.get("tail"); tail && !tail->empty() && *tail != "all") {
    int64_t count = 0;
    auto [end, error] = std::from_chars(tail->data(), tail->data() + tail->size(), count);
    if (error != std::errc() || end != tail->data() + tail->size())
      return Error::invalid_argument(fmt::format("invalid value for tail: {}", *tail));
    if (count >= 0) options.tail = static_cast<uint64_t>(count);
  }
  bool timestamps = request.query.get_bool("timestamps");
  bool tty = container.config.tty;
  http::StreamReply reply;
  reply.headers.set("Content-Type",
                    tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream");
  reply.body = [&context, id = container.id, options, timestamps, tty](http::ChunkWriter& writer) {
    (void)context.containers.read_logs(
        id, options, [&writer] { return writer.client_gone(); },
        [&](const daemon::containers::LogEntry& entry) {
          std::string text = entry.text;
          if (timestamps) text = format_rfc3339(entry.time, TimePrecision::kNanos) + " " + text;
          int stream =
              entry.stream == daemon::containers::LogStream::kStderr ? stdcopy::kStderr : stdcopy::kStdout;
          return static_cast<bool>(writer.write_chunk(tty ? text : stdcopy::frame(stream, text)));
        });
  };
  return Reply(std::move(reply));
}

Result<Reply> prune_containers(DockerContext& context, const Request& request) {
  Filters filters = KILN_TRY(Filters::parse(request.query, {"until", "label", "label!"}));
  if (!filters.empty())
    return Error::invalid_argument("container prune filters (until, label) are not supported by Kiln yet");
  Json deleted = Json::array();
  for (const auto& container : KILN_TRY(context.containers.list())) {
    if (container.state != ContainerState::kExited && container.state != ContainerState::kCreated &&
        container.state != ContainerState::kDead)
      continue;
    if (context.containers.remove(container.id, false)) deleted.push_back(container.id);
  }
  return Reply(http::json_response(
      200, {{"ContainersDeleted", deleted.empty() ? Json(nullptr) : deleted}, {"SpaceReclaimed", 0}}));
}

Result<daemon::containers::ExecConfig> parse_exec_config(const Json& body) {
  if (!body.is_object()) return Error::invalid_argument("exec configuration must be a JSON object");
  daemon::containers::ExecConfig config;
  auto strings = [&](const char* key) -> Result<std::vector<std::string>> {
    auto found = body.find(key);
    if (found == body.end() || found->is_null()) return std::vector<std::string>();
    if (found->is_string()) return std::vector<std::string>{found->get<std::string>()};
    if (!found->is_array())
      return Error::invalid_argument(
          fmt::format("json: cannot unmarshal {} into Go struct field ExecConfig.{} of type []string",
                      found->type_name(), key));
    std::vector<std::string> out;
    for (const auto& item : *found) {
      if (!item.is_string())
        return Error::invalid_argument(
            fmt::format("json: cannot unmarshal {} into Go struct field ExecConfig.{} of type string",
                        item.type_name(), key));
      out.push_back(item.get<std::string>());
    }
    return out;
  };
  auto boolean = [&](const char* key, bool fallback) -> Result<bool> {
    auto found = body.find(key);
    if (found == body.end() || found->is_null()) return fallback;
    if (!found->is_boolean())
      return Error::invalid_argument(
          fmt::format("json: cannot unmarshal {} into Go struct field ExecConfig.{} of type bool",
                      found->type_name(), key));
    return found->get<bool>();
  };
  auto text = [&](const char* key) -> Result<std::string> {
    auto found = body.find(key);
    if (found == body.end() || found->is_null()) return std::string();
    if (!found->is_string())
      return Error::invalid_argument(
          fmt::format("json: cannot unmarshal {} into Go struct field ExecConfig.{} of type string",
                      found->type_name(), key));
    return found->get<std::string>();
  };
  config.cmd = KILN_TRY(strings("Cmd"));
  config.env = KILN_TRY(strings("Env"));
  config.user = KILN_TRY(text("User"));
  config.working_dir = KILN_TRY(text("WorkingDir"));
  config.tty = KILN_TRY(boolean("Tty", false));
  config.attach_stdin = KILN_TRY(boolean("AttachStdin", false));
  config.attach_stdout = KILN_TRY(boolean("AttachStdout", false));
  config.attach_stderr = KILN_TRY(boolean("AttachStderr", false));
  config.privileged = KILN_TRY(boolean("Privileged", false));
  if (auto size = body.find("ConsoleSize"); size != body.end() && size->is_array() && size->size() == 2 &&
                                            (*size)[0].is_number_unsigned() &&
                                            (*size)[1].is_number_unsigned()) {
    config.console_rows = static_cast<uint16_t>(std::min<uint64_t>((*size)[0].get<uint64_t>(), 65535));
    config.console_cols = static_cast<uint16_t>(std::min<uint64_t>((*size)[1].get<uint64_t>(), 65535));
  }
  return config;
}

Json exec_json(const daemon::containers::ExecRecord& exec) {
  std::vector<std::string> arguments(exec.config.cmd.begin() + (exec.config.cmd.empty() ? 0 : 1),
                                     exec.config.cmd.end());
  return {{"ID", exec.id},
          {"Running", exec.running},
          {"ExitCode", exec.exit_code ? Json(*exec.exit_code) : Json(nullptr)},
          {"ProcessConfig",
           {{"tty", exec.config.tty},
            {"entrypoint", exec.config.cmd.empty() ? "" : exec.config.cmd.front()},
            {"arguments", arguments},
            {"privileged", exec.config.privileged},
            {"user", exec.config.user}}},
          {"OpenStdin", exec.config.attach_stdin},
          {"OpenStderr", exec.config.attach_stderr},
          {"OpenStdout", exec.config.attach_stdout},
          {"CanRemove", false},
          {"ContainerID", exec.container_id},
          {"DetachKeys", ""},
          {"Pid", exec.pid}};
}

Json cpu_stats_json(const daemon::containers::ContainerStats& stats) {
  return {{"cpu_usage",
           {{"total_usage", stats.cpu_user_ns + stats.cpu_kernel_ns},
            {"usage_in_kernelmode", stats.cpu_kernel_ns},
            {"usage_in_usermode", stats.cpu_user_ns}}},
          {"system_cpu_usage", stats.system_cpu_ns},
          {"online_cpus", stats.online_cpus},
          {"throttling_data", {{"periods", 0}, {"throttled_periods", 0}, {"throttled_time", 0}}}};
}

// dockerd's stats document (cgroup v1 shape, which every client reads): CPU from the VM's monitor process,
// memory in use in the guest against the VM's size as the limit.
Json stats_json(const ContainerRecord& container, const daemon::containers::ContainerStats& now,
                const std::optional<daemon::containers::ContainerStats>& before) {
  Json precpu =
      before ? cpu_stats_json(*before)
             : Json{{"cpu_usage", {{"total_usage", 0}, {"usage_in_kernelmode", 0}, {"usage_in_usermode", 0}}},
                    {"throttling_data", {{"periods", 0}, {"throttled_periods", 0}, {"throttled_time", 0}}}};
  return {{"read", format_rfc3339(now.read, TimePrecision::kNanos)},
          {"preread", before ? format_rfc3339(before->read, TimePrecision::kNanos) : "0001-01-01T00:00:00Z"},
          {"pids_stats", {{"current", now.pids}}},
          {"blkio_stats",
           {{"io_service_bytes_recursive", nullptr},
            {"io_serviced_recursive", nullptr},
            {"io_queue_recursive", nullptr},
            {"io_service_time_recursive", nullptr},
            {"io_wait_time_recursive", nullptr},
            {"io_merged_recursive", nullptr},
            {"io_time_recursive", nullptr},
            {"sectors_recursive", nullptr}}},
          {"num_procs", 0},
          {"storage_stats", Json::object()},
          {"cpu_stats", cpu_stats_json(now)},
          {"precpu_stats", precpu},
          {"memory_stats",
           {{"usage", now.memory_usage_bytes},
            {"stats", {{"inactive_file", 0}}},
            {"limit", now.memory_limit_bytes}}},
          {"name", "/" + container.name},
          {"id", container.id}};
}

Result<Reply> container_stats(DockerContext& context, const Request& request) {
  auto container = KILN_TRY(context.containers.inspect(id_param(request)));
  bool stream = !request.query.has("stream") || request.query.get_bool("stream");
  bool one_shot = request.query.get_bool("one-shot");
  http::StreamReply reply;
  reply.headers.set("Content-Type", "application/json");
  reply.body = [&context, container, stream, one_shot](http::ChunkWriter& writer) {
    std::optional<daemon::containers::ContainerStats> before;
    if (!stream && !one_shot) {
      // One sample with a CPU percentage needs two readings: dockerd takes them a second apart too.
      auto first = context.containers.stats(container.id);
      if (!first) return;
      before = *first;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    for (;;) {
      auto now = context.containers.stats(container.id);
      if (!now) return;
      if (!writer.write_chunk(stats_json(container, *now, before).dump() + "\n")) return;
      if (!stream) return;
      before = *now;
      for (int i = 0; i < 10 && !writer.client_gone(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (writer.client_gone()) return;
    }
  };
  return Reply(std::move(reply));
}

Result<std::optional<uint16_t>> dimension(const Request& request, std::string_view key) {
  return request.query.get_unsigned<uint16_t>(key, 0, 65535);
}

}  // namespace

void add_container_routes(DockerRoutes& routes, DockerContext& context) {
  routes.add("GET", "/containers/json",
             [&context](Request& request) -> Result<Reply> { return list_containers(context, request); });
  routes.add("POST", "/containers/create",
             [&context](Request& request) -> Result<Reply> { return create_container(context, request); });
  routes.add("POST", "/containers/prune",
             [&context](Request& request) -> Result<Reply> { return prune_containers(context, request); });
  routes.add("GET", "/containers/{id}/json", [&context](Request& request) -> Result<Reply> {
    auto container = KILN_TRY(context.containers.inspect(id_param(request)));
    Json inspected = container_inspect_json(container, inspect_extras(context, container));
    if (context.networks != nullptr) {
      std::optional<daemon::VmRecord> vm = container_vm(context, container);
      inspected["NetworkSettings"] = container_network_settings_json(
          container, vm ? &*vm : nullptr,
          container_ports_json(container, vm ? &*vm : nullptr, PortsView::kInspect));
    }
    return Reply(http::json_response(200, inspected));
  });
  routes.add("POST", "/containers/{id}/start", [&context](Request& request) -> Result<Reply> {
    return done_or_not_modified(KILN_TRY(context.containers.start(id_param(request))));
  });
  routes.add("POST", "/containers/{id}/stop", [&context](Request& request) -> Result<Reply> {
    auto timeout = KILN_TRY(query_int(request, "t"));
    auto signal = KILN_TRY(query_signal(request));
    return done_or_not_modified(KILN_TRY(context.containers.stop(id_param(request), timeout, signal)));
  });
  routes.add("POST", "/containers/{id}/restart", [&context](Request& request) -> Result<Reply> {
    KILN_TRY(context.containers.restart(id_param(request), KILN_TRY(query_int(request, "t"))));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/containers/{id}/kill", [&context](Request& request) -> Result<Reply> {
    int signal = KILN_TRY(query_signal(request)).value_or(SIGKILL);
    KILN_TRY(context.containers.kill(id_param(request), signal));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/containers/{id}/wait",
             [&context](Request& request) -> Result<Reply> { return wait_container(context, request); });
  routes.add("POST", "/containers/{id}/attach",
             [&context](Request& request) -> Result<Reply> { return attach_container(context, request); });
  routes.add("GET", "/containers/{id}/logs",
             [&context](Request& request) -> Result<Reply> { return container_logs(context, request); });
  routes.add("DELETE", "/containers/{id}", [&context](Request& request) -> Result<Reply> {
    if (request.query.get_bool("link")) {
      KILN_TRY(context.containers.remove_link(id_param(request)));
      return Reply(http::empty_response(204));
    }
    KILN_TRY(context.containers.remove(id_param(request), request.query.get_bool("force"),
                                       request.query.get_bool("v")));
    return Reply(http::empty_response(204));
  });
  // docker rm --link PARENT/ALIAS: the docker CLI puts the link's name in the path as it is.
  routes.add("DELETE", "/containers/{parent}/{alias}", [&context](Request& request) -> Result<Reply> {
    std::string name = fmt::format("{}/{}", request.param("parent"), request.param("alias"));
    if (!request.query.get_bool("link")) return Error::not_found(fmt::format("No such container: {}", name));
    KILN_TRY(context.containers.remove_link(name));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/containers/{id}/rename", [&context](Request& request) -> Result<Reply> {
    auto name = request.query.get("name").value_or("");
    if (name.empty()) return Error::invalid_argument("Neither old nor new names may be empty");
    KILN_TRY(context.containers.rename(id_param(request), std::string(name)));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/containers/{id}/pause", [&context](Request& request) -> Result<Reply> {
    KILN_TRY(context.containers.pause(id_param(request)));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/containers/{id}/unpause", [&context](Request& request) -> Result<Reply> {
    KILN_TRY(context.containers.unpause(id_param(request)));
    return Reply(http::empty_response(204));
  });
  routes.add("POST", "/containers/{id}/resize", [&context](Request& request) -> Result<Reply> {
    auto rows = KILN_TRY(dimension(request, "h")).value_or(0);
    auto cols = KILN_TRY(dimension(request, "w")).value_or(0);
    KILN_TRY(context.containers.resize(id_param(request), rows, cols));
    return Reply(http::empty_response(200));
  });

  routes.add("POST", "/containers/{id}/update", [&context](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(json_body_or_null(request));
    auto container = KILN_TRY(context.containers.inspect(id_param(request)));
    auto updated = KILN_TRY(parse_update_container(body, container.host_config, context.host_cpus));
    KILN_TRY(context.containers.update(container.id, updated, body));
    return Reply(http::json_response(200, {{"Warnings", Json::array()}}));
  });
  routes.add("GET", "/containers/{id}/top", [&context](Request& request) -> Result<Reply> {
    auto top = KILN_TRY(context.containers.top(id_param(request)));
    return Reply(http::json_response(200, {{"Titles", top.titles}, {"Processes", top.processes}}));
  });
  routes.add("GET", "/containers/{id}/stats",
             [&context](Request& request) -> Result<Reply> { return container_stats(context, request); });

  routes.add("POST", "/containers/{id}/exec", [&context](Request& request) -> Result<Reply> {
    auto config = KILN_TRY(parse_exec_config(KILN_TRY(json_body_or_null(request))));
    auto id = KILN_TRY(context.containers.exec_create(id_param(request), std::move(config)));
    return Reply(http::json_response(201, {{"Id", id}}));
  });
  routes.add("POST", "/exec/{id}/start", [&context](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(json_body_or_null(request));
    bool detach = body.is_object() && body.value("Detach", false);
    auto exec = KILN_TRY(context.containers.exec_inspect(id_param(request)));
    if (exec.started)
      return Error::failed_precondition(fmt::format("Error: Exec command {} is already running", exec.id));
    if (detach) {
      KILN_TRY(context.containers.exec_start(exec.id, UniqueFd(), {}));
      return Reply(http::empty_response(200));
    }
    http::HijackReply reply;
    reply.content_type =
        exec.config.tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream";
    reply.body = [&context, id = exec.id](http::RawConnection connection) {
      (void)context.containers.exec_start(id, std::move(connection.fd), std::move(connection.buffered));
    };
    return Reply(std::move(reply));
  });
  routes.add("GET", "/exec/{id}/json", [&context](Request& request) -> Result<Reply> {
    return Reply(
        http::json_response(200, exec_json(KILN_TRY(context.containers.exec_inspect(id_param(request))))));
  });
  routes.add("POST", "/exec/{id}/resize", [&context](Request& request) -> Result<Reply> {
    auto rows = KILN_TRY(dimension(request, "h")).value_or(0);
    auto cols = KILN_TRY(dimension(request, "w")).value_or(0);
    KILN_TRY(context.containers.exec_resize(id_param(request), rows, cols));
    return Reply(http::empty_response(200));
  });
}

}  // namespace kiln::api::docker

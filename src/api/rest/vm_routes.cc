// /v1/vms: create, list, inspect, update, delete, lifecycle actions, shared folders, addresses.
#include <fmt/format.h>

#include "api/rest/rest_api.h"
#include "api/rest/vm_json.h"

namespace kiln::api::rest {
namespace {

using http::Reply;
using http::Request;

constexpr auto kDefaultStopGrace = std::chrono::seconds(10);
constexpr auto kMaxStopGrace = std::chrono::hours(24);

// ?timeout= (Kiln) or ?t= (Docker's spelling): how long a stop waits for the guest before forcing it.
Result<std::chrono::milliseconds> stop_grace(const Request& request) {
  std::string_view key = request.query.has("timeout") ? "timeout" : "t";
  auto grace = KILN_TRY(request.query.get_duration(key, kMaxStopGrace));
  return grace.value_or(kDefaultStopGrace);
}

Result<daemon::VmFilter> parse_filter(const Request& request) {
  daemon::VmFilter filter;
  for (auto label : request.query.get_all("label")) {
    auto equals = label.find('=');
    if (equals == std::string_view::npos) {
      filter.label_keys.emplace_back(label);
    } else {
      filter.labels[std::string(label.substr(0, equals))] = std::string(label.substr(equals + 1));
    }
  }
  if (auto state = request.query.get("state")) {
    auto parsed = daemon::vm_state_from_string(*state);
    if (!parsed) return Error::invalid_argument(fmt::format("unknown VM state \"{}\"", *state));
    filter.state = parsed;
  }
  if (auto name = request.query.get("name")) filter.name = std::string(*name);
  return filter;
}

Result<Reply> vm_reply(Result<daemon::VmRecord> vm, int status = 200) {
  if (!vm) return vm.error();
  return Reply(http::json_response(status, vm_to_json(*vm)));
}

}  // namespace

void add_vm_routes(http::Router& router, ApiContext& context) {
  auto& vms = context.vms;
  router.add("POST", "/v1/vms", [&vms](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(request.json_body());
    auto create = KILN_TRY(parse_create_vm(body));
    return vm_reply(vms.create_vm(std::move(create)), 201);
  });
  router.add("GET", "/v1/vms", [&vms](Request& request) -> Result<Reply> {
    auto filter = KILN_TRY(parse_filter(request));
    auto list = KILN_TRY(vms.list(filter));
    Json array = Json::array();
    for (const auto& vm : list) array.push_back(vm_to_json(vm));
    return Reply(http::json_response(200, array));
  });
  router.add("GET", "/v1/vms/{id}", [&vms](Request& request) -> Result<Reply> {
    return vm_reply(vms.inspect(std::string(request.param("id"))));
  });
  router.add("PATCH", "/v1/vms/{id}", [&vms](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(request.json_body());
    auto update = KILN_TRY(parse_update_vm(body));
    return vm_reply(vms.update(std::string(request.param("id")), update));
  });
  router.add("DELETE", "/v1/vms/{id}", [&vms](Request& request) -> Result<Reply> {
    KILN_TRY(vms.remove(std::string(request.param("id")), request.query.get_bool("force")));
    return Reply(http::empty_response(204));
  });

  // Instant clone of a running VM (a disk copy of a stopped one): docs/fork.md.
  router.add("POST", "/v1/vms/{id}/clone", [&vms](Request& request) -> Result<Reply> {
    Json body = request.body.empty() ? Json() : KILN_TRY(request.json_body());
    auto clone = KILN_TRY(parse_clone_vm(body));
    return vm_reply(vms.clone_vm(std::string(request.param("id")), std::move(clone)), 201);
  });
  router.add("POST", "/v1/vms/{id}/start", [&vms](Request& request) -> Result<Reply> {
    return vm_reply(vms.start(std::string(request.param("id"))));
  });
  router.add("POST", "/v1/vms/{id}/stop", [&vms](Request& request) -> Result<Reply> {
    auto grace = KILN_TRY(stop_grace(request));
    return vm_reply(vms.stop(std::string(request.param("id")), grace));
  });
  router.add("POST", "/v1/vms/{id}/kill", [&vms](Request& request) -> Result<Reply> {
    return vm_reply(vms.kill(std::string(request.param("id"))));
  });
  router.add("POST", "/v1/vms/{id}/restart", [&vms](Request& request) -> Result<Reply> {
    auto grace = KILN_TRY(stop_grace(request));
    return vm_reply(vms.restart(std::string(request.param("id")), grace));
  });
  router.add("POST", "/v1/vms/{id}/pause", [&vms](Request& request) -> Result<Reply> {
    return vm_reply(vms.pause(std::string(request.param("id"))));
  });
  router.add("POST", "/v1/vms/{id}/resume", [&vms](Request& request) -> Result<Reply> {
    return vm_reply(vms.resume(std::string(request.param("id"))));
  });
  router.add("POST", "/v1/vms/{id}/suspend", [&vms](Request& request) -> Result<Reply> {
    return vm_reply(vms.suspend(std::string(request.param("id"))));
  });

  router.add("GET", "/v1/vms/{id}/ip", [&vms](Request& request) -> Result<Reply> {
    auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
    return Reply(http::json_response(200, {{"id", vm.id}, {"addresses", addresses_json(vm)}}));
  });

  router.add("GET", "/v1/vms/{id}/folders", [&vms](Request& request) -> Result<Reply> {
    auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
    Json array = Json::array();
    for (const auto& folder : vm.folders) array.push_back(folder_to_json(folder));
    return Reply(http::json_response(200, {{"enabled", vm.folders_enabled}, {"folders", array}}));
  });
  router.add("POST", "/v1/vms/{id}/folders", [&vms](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(request.json_body());
    auto folder = KILN_TRY(parse_shared_folder(body));
    auto added = KILN_TRY(vms.add_folder(std::string(request.param("id")), folder));
    Json reply = folder_to_json(added.folder);
    reply["applied"] = added.applied_now;
    reply["note"] = added.note;
    return Reply(http::json_response(201, reply));
  });
  router.add("DELETE", "/v1/vms/{id}/folders/{folder}", [&vms](Request& request) -> Result<Reply> {
    KILN_TRY(vms.remove_folder(std::string(request.param("id")), std::string(request.param("folder"))));
    return Reply(http::empty_response(204));
  });
}

void add_kiln_routes(http::Router& router, ApiContext& context) {
  add_meta_routes(router, context);
  add_vm_routes(router, context);
  add_exec_routes(router, context);
  add_stream_routes(router, context);
  add_image_routes(router, context);
  add_template_routes(router, context);
  add_appcatalyst_routes(router, context);
}

}  // namespace kiln::api::rest

// VMware AppCatalyst's REST API (/api/vms...), so its docker-machine driver and Vagrant provider work
// unchanged. Their clients treat anything but 200 as an error and parse every error as {"code", "message"},
// so every answer here is 200 on success and that shape on failure. AppCatalyst's VM `id` is chosen by the
// client and names the VM in later paths: it is the Kiln VM's name. A folder's id is its guestPath (a share
// name, mounted in the guest under /mnt/hgfs/NAME, where AppCatalyst guests found theirs).
#include <fmt/format.h>

#include "api/rest/rest_api.h"

namespace kiln::api::rest {
namespace {

using daemon::VmState;
using http::Reply;
using http::Request;

constexpr auto kShutdownGrace = std::chrono::seconds(30);
constexpr int64_t kWritableFlag = 4;  // the flags value the clients send for a read-write share
constexpr std::string_view kDisplayNameLabel = "appcatalyst.name";

Reply message_reply(std::string message) {
  return http::json_response(200, {{"code", 200}, {"message", message}});
}

Json vm_shape(const daemon::VmRecord& vm) {
  auto display = vm.labels.find(std::string(kDisplayNameLabel));
  return {{"id", vm.name}, {"name", display == vm.labels.end() ? vm.name : display->second}, {"tag", vm.tag}};
}

std::string power_message(VmState state) {
  switch (state) {
    case VmState::kStarting:
      return "powering on";
    case VmState::kRunning:
      return "powered on";
    case VmState::kPaused:
      return "paused";
    case VmState::kStopping:
      return "powering off";
    case VmState::kSuspending:
      return "suspending";
    case VmState::kSuspended:
      return "suspended";
    default:
      return "powered off";
  }
}

// The clients send raw words ("on") with a JSON content type; a JSON string ("\"on\"") is accepted too.
std::string raw_word(const std::string& body) {
  std::string word = body;
  while (!word.empty() && std::isspace(static_cast<unsigned char>(word.back()))) word.pop_back();
  size_t start = 0;
  while (start < word.size() && std::isspace(static_cast<unsigned char>(word[start]))) ++start;
  word = word.substr(start);
  if (word.size() >= 2 && word.front() == '"' && word.back() == '"') word = word.substr(1, word.size() - 2);
  return word;
}

http::Handler shaped(std::function<Result<Reply>(Request&)> handler) {
  return [handler = std::move(handler)](Request& request) -> Result<Reply> {
    auto reply = handler(request);
    if (!reply) return Reply(http::error_response(reply.error(), appcatalyst_error_body));
    return reply;
  };
}

Result<daemon::RootSource> template_source(daemon::VmManager& vms, const std::string& reference) {
  // AppCatalyst shipped one template, "photon"; Kiln's own minimal userland stands in for it.
  if (reference.empty() || reference == "photon") return daemon::RootSource{};
  if (vms.inspect(reference))
    return daemon::RootSource{.kind = daemon::RootSource::Kind::kVm, .value = reference};
  if (vms.config().images)
    return daemon::RootSource{.kind = daemon::RootSource::Kind::kImage, .value = reference};
  return Error::not_found(fmt::format("no such template: {}", reference));
}

Result<Reply> set_power(daemon::VmManager& vms, const std::string& id, const std::string& operation) {
  auto vm = KILN_TRY(vms.inspect(id));
  if (operation == "on") {
    if (vm.state == VmState::kPaused) {
      vm = KILN_TRY(vms.resume(id));
    } else {
      vm = KILN_TRY(vms.start(id));
    }
  } else if (operation == "off") {
    if (daemon::has_monitor(vm.state)) vm = KILN_TRY(vms.kill(id));
  } else if (operation == "shutdown") {
    vm = KILN_TRY(vms.stop(id, kShutdownGrace));
  } else if (operation == "suspend") {
    vm = KILN_TRY(vms.suspend(id));
  } else if (operation == "pause") {
    vm = KILN_TRY(vms.pause(id));
  } else if (operation == "unpause") {
    vm = KILN_TRY(vms.resume(id));
  } else {
    return Error::invalid_argument(fmt::format(
        "unknown power operation \"{}\" (use on, off, shutdown, suspend, pause or unpause)", operation));
  }
  return message_reply(power_message(vm.state));
}

}  // namespace

Json appcatalyst_error_body(int status, const Error& error) {
  return Json{{"code", status}, {"message", error.message()}};
}

void add_appcatalyst_routes(http::Router& router, ApiContext& context) {
  auto& vms = context.vms;
  router.add("GET", "/api/vms", shaped([&vms](Request&) -> Result<Reply> {
               Json ids = Json::array();
               for (const auto& vm : KILN_TRY(vms.list({}))) ids.push_back(vm.name);
               return Reply(http::json_response(200, ids));
             }));
  router.add("POST", "/api/vms", shaped([&vms](Request& request) -> Result<Reply> {
               Json body = KILN_TRY(request.json_body());
               if (!body.is_object()) return Error::invalid_argument("the body must be a JSON object");
               std::string id = KILN_TRY(required_string(body, "id"));
               daemon::CreateVmRequest create;
               create.name = id;
               create.tag = KILN_TRY(optional_string(body, "tag")).value_or("");
               if (auto name = KILN_TRY(optional_string(body, "name")); name && *name != id) {
                 create.labels[std::string(kDisplayNameLabel)] = *name;
               }
               create.source = KILN_TRY(
                   template_source(vms, KILN_TRY(optional_string(body, "sourceReference")).value_or("")));
               if (create.source.kind == daemon::RootSource::Kind::kVm) {
                 // A running template VM is cloned instantly: the new VM runs on from the template's
                 // memory at this moment (docs/fork.md). A stopped one's disk is copied, as before.
                 auto source = KILN_TRY(vms.inspect(create.source.value));
                 if (source.state == VmState::kRunning) {
                   // Not the source's display name (a clone inherits its labels).
                   if (source.labels.contains(std::string(kDisplayNameLabel)))
                     create.labels.try_emplace(std::string(kDisplayNameLabel), id);
                   auto vm = KILN_TRY(vms.clone_vm(
                       source.id, {.name = id, .tag = create.tag, .labels = std::move(create.labels)}));
                   return Reply(http::json_response(200, vm_shape(vm)));
                 }
               }
               auto vm = KILN_TRY(vms.create_vm(std::move(create)));
               return Reply(http::json_response(200, vm_shape(vm)));
             }));
  router.add("GET", "/api/vms/{id}", shaped([&vms](Request& request) -> Result<Reply> {
               auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
               return Reply(http::json_response(200, vm_shape(vm)));
             }));
  router.add("DELETE", "/api/vms/{id}", shaped([&vms](Request& request) -> Result<Reply> {
               // The clients power the VM off first; a VM still running is stopped here rather than refused.
               KILN_TRY(vms.remove(std::string(request.param("id")), /*force=*/true));
               return Reply(http::empty_response(200));
             }));

  router.add("GET", "/api/vms/power/{id}", shaped([&vms](Request& request) -> Result<Reply> {
               auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
               return message_reply(power_message(vm.state));
             }));
  router.add("PATCH", "/api/vms/power/{id}", shaped([&vms](Request& request) -> Result<Reply> {
               return set_power(vms, std::string(request.param("id")), raw_word(request.body));
             }));

  router.add("GET", "/api/vms/{id}/ipaddress", shaped([&vms](Request& request) -> Result<Reply> {
               auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
               if (vm.state != VmState::kRunning) {
                 return Error::failed_precondition(
                     fmt::format("VM {} is {}: it has no IP address", vm.name, power_message(vm.state)));
               }
               if (vm.nics.empty()) {
                 return Error::unavailable(fmt::format(
                     "VM {} has no IP address: it is on no network (create it with a network)", vm.name));
               }
               return message_reply(vm.nics.front().ipv4);
             }));

  router.add("GET", "/api/vms/{id}/folders", shaped([&vms](Request& request) -> Result<Reply> {
               auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
               Json ids = Json::array();
               for (const auto& folder : vm.folders) ids.push_back(folder.id);
               return Reply(http::json_response(200, ids));
             }));
  router.add(
      "PATCH", "/api/vms/{id}/folders", shaped([&vms](Request& request) -> Result<Reply> {
        std::string word = raw_word(request.body);
        if (word != "true" && word != "false") {
          return Error::invalid_argument(fmt::format("the body must be true or false, not \"{}\"", word));
        }
        auto vm = KILN_TRY(vms.set_folders_enabled(std::string(request.param("id")), word == "true"));
        return message_reply(vm.folders_enabled ? "true" : "false");
      }));
  router.add("POST", "/api/vms/{id}/folders", shaped([&vms](Request& request) -> Result<Reply> {
               Json body = KILN_TRY(request.json_body());
               static constexpr std::array<std::string_view, 3> kAllowed = {"guestPath", "hostPath", "flags"};
               KILN_TRY(reject_unknown_fields(body, kAllowed));
               daemon::SharedFolder folder;
               folder.guest_path = KILN_TRY(required_string(body, "guestPath"));
               folder.host_path = KILN_TRY(required_string(body, "hostPath"));
               folder.flags = KILN_TRY(optional_int(body, "flags")).value_or(kWritableFlag);
               folder.read_only = (folder.flags & kWritableFlag) == 0;
               folder.id = folder.guest_path;
               auto added = KILN_TRY(vms.add_folder(std::string(request.param("id")), folder));
               return Reply(http::json_response(200, {{"guestPath", added.folder.id},
                                                      {"hostPath", added.folder.host_path},
                                                      {"flags", added.folder.flags}}));
             }));
  router.add(
      "GET", "/api/vms/{id}/folders/{folder}", shaped([&vms](Request& request) -> Result<Reply> {
        auto vm = KILN_TRY(vms.inspect(std::string(request.param("id"))));
        for (const auto& folder : vm.folders) {
          if (folder.id == request.param("folder")) {
            return Reply(http::json_response(
                200, {{"guestPath", folder.id}, {"hostPath", folder.host_path}, {"flags", folder.flags}}));
          }
        }
        return Error::not_found(
            fmt::format("VM {} has no shared folder {}", vm.name, request.param("folder")));
      }));
  router.add(
      "DELETE", "/api/vms/{id}/folders/{folder}", shaped([&vms](Request& request) -> Result<Reply> {
        KILN_TRY(vms.remove_folder(std::string(request.param("id")), std::string(request.param("folder"))));
        return Reply(http::empty_response(200));
      }));
}

}  // namespace kiln::api::rest

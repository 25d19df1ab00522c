// /volumes/...: kilnd's VolumeManager in the Docker Engine API's shapes, for `docker volume
// create|ls|inspect|rm|prune`, and the Volumes part of /system/df. The work is the manager's
// (src/daemon/volumes); this file only translates, in dockerd 20.10's words (api/server/router/volume,
// volume/service) and with API 1.42's prune rule for clients that speak 1.42 or later.
#include <fmt/format.h>

#include <algorithm>
#include <regex>

#include "api/docker/container_json.h"
#include "api/docker/docker_routes.h"
#include "api/docker/filters.h"

namespace kiln::api::docker {
namespace {

using daemon::volumes::VolumeRecord;
using http::Reply;
using http::Request;

// dockerd decodes the create body into this Go type; its type errors name it.
constexpr std::string_view kCreateBodyType = "VolumeCreateBody";

std::string name_param(const Request& request) {
  return std::string(request.param("name"));
}

Json string_map_or_null(const std::map<std::string, std::string>& map, bool given) {
  return map.empty() && !given ? Json(nullptr) : Json(map);
}

Json volume_json(DockerContext& context, const VolumeRecord& volume) {
  return {{"CreatedAt", volume.created_at},
          {"Driver", volume.driver},
          {"Labels", string_map_or_null(volume.labels, volume.labels_given)},
          {"Mountpoint", context.volumes.data_path(volume.name)},
          {"Name", volume.name},
          {"Options", string_map_or_null(volume.options, volume.options_given)},
          {"Scope", volume.scope}};
}

Result<daemon::volumes::CreateVolume> parse_create_volume(const Request& request) {
  if (request.body.empty()) return Error::invalid_argument("got EOF while reading request body");
  auto body = parse_json(request.body);
  if (!body) return Error::invalid_argument(fmt::format("invalid JSON: {}", body.error().message()));
  if (body->is_null()) return daemon::volumes::CreateVolume{};
  if (!body->is_object()) {
    return Error::invalid_argument(fmt::format("json: cannot unmarshal {} into Go value of type volume.{}",
                                               json_kind(*body), kCreateBodyType));
  }
  // One field per statement: an early return out of a half-built aggregate leaks its members (GCC).
  StructReader fields(*body, kCreateBodyType);
  daemon::volumes::CreateVolume create;
  create.name = KILN_TRY(fields.string("Name")).value_or("");
  create.driver = KILN_TRY(fields.string("Driver")).value_or("");
  auto labels = KILN_TRY(fields.string_map("Labels"));
  create.labels_given = labels.has_value();
  create.labels = labels.value_or(std::map<std::string, std::string>{});
  auto driver_opts = KILN_TRY(fields.string_map("DriverOpts"));
  create.driver_opts_given = driver_opts.has_value();
  create.driver_opts = driver_opts.value_or(std::map<std::string, std::string>{});
  return create;
}

// ---- filters ----------------------------------------------------------------------------------------------

Result<Reply> list_volumes(DockerContext& context, const Request& request) {
  Filters filters = KILN_TRY(Filters::parse(request.query, {"dangling", "driver", "label", "name"}));
  auto dangling = KILN_TRY(filters.boolean("dangling"));
  daemon::volumes::VolumeUsers users;
  if (dangling) users = context.volumes.users();
  Json volumes = Json::array();
  for (const VolumeRecord& volume : KILN_TRY(context.volumes.list())) {
    if (!regex_matches(filters.get("name"), volume.name) ||
        !exact_match(filters.get("driver"), volume.driver) ||
        !labels_match_all(filters.get("label"), volume.labels)) {
      continue;
    }
    if (dangling) {
      auto it = users.find(volume.name);
      bool used = it != users.end() && !it->second.empty();
      if (used == *dangling) continue;
    }
    volumes.push_back(volume_json(context, volume));
  }
  return Reply(http::json_response(200, {{"Volumes", volumes}, {"Warnings", nullptr}}));
}

// The API version a request speaks: its path's prefix, or the newest served without one (as dockerd).
std::pair<int, int> request_api_version(const Request& request) {
  auto version = parse_api_version(request.api_version);
  return version ? *version : *parse_api_version(kApiVersion);
}

Result<Reply> prune_volumes(DockerContext& context, const Request& request) {
  // API 1.42 made prune take only anonymous volumes unless the filter all=true says otherwise; older clients
  // keep the old meaning, every unused volume (and dockerd before 1.42 knew no "all" filter).
  bool old_api = request_api_version(request) < std::pair(1, 42);
  std::set<std::string_view> supported = {"label", "label!"};
  if (!old_api) supported.insert("all");
  Filters filters = KILN_TRY(Filters::parse(request.query, supported));
  bool all = old_api || KILN_TRY(filters.boolean("all")).value_or(false);
  std::vector<std::string> with = filters.get("label");
  std::vector<std::string> without = filters.get("label!");
  auto report = KILN_TRY(context.volumes.prune([&](const VolumeRecord& volume) {
    if (!all && !volume.anonymous) return false;
    if (!labels_match_all(with, volume.labels)) return false;
    return without.empty() || !labels_match_all(without, volume.labels);
  }));
  return Reply(http::json_response(
      200, {{"VolumesDeleted", report.removed}, {"SpaceReclaimed", report.space_reclaimed}}));
}

}  // namespace

Result<Json> volumes_disk_usage(DockerContext& context) {
  daemon::volumes::VolumeUsers users = context.volumes.users();
  Json volumes = Json::array();
  for (const VolumeRecord& volume : KILN_TRY(context.volumes.list())) {
    // As dockerd: volumes with mount options hold no data here, and are left out.
    if (!volume.options.empty()) continue;
    Json entry = volume_json(context, volume);
    auto it = users.find(volume.name);
    entry["UsageData"] = {{"RefCount", it == users.end() ? 0 : it->second.size()},
                          {"Size", context.volumes.size(volume.name).value_or(-1)}};
    volumes.push_back(std::move(entry));
  }
  return volumes;
}

void add_volume_routes(DockerRoutes& routes, DockerContext& context) {
  routes.add("GET", "/volumes",
             [&context](Request& request) -> Result<Reply> { return list_volumes(context, request); });
  routes.add("POST", "/volumes/create", [&context](Request& request) -> Result<Reply> {
    auto created = KILN_TRY(context.volumes.create(KILN_TRY(parse_create_volume(request))));
    return Reply(http::json_response(201, volume_json(context, created)));
  });
  routes.add("POST", "/volumes/prune",
             [&context](Request& request) -> Result<Reply> { return prune_volumes(context, request); });
  routes.add("GET", "/volumes/{name}", [&context](Request& request) -> Result<Reply> {
    return Reply(
        http::json_response(200, volume_json(context, KILN_TRY(context.volumes.get(name_param(request))))));
  });
  routes.add("DELETE", "/volumes/{name}", [&context](Request& request) -> Result<Reply> {
    KILN_TRY(context.volumes.remove(name_param(request), request.query.get_bool("force")));
    return Reply(http::empty_response(204));
  });
}

}  // namespace kiln::api::docker

#include "api/docker/docker_routes.h"

#include <fmt/format.h>

#include <charconv>

#include "api/docker/docker_api.h"
#include "kiln/version.h"

namespace kiln::api::docker {
namespace {

// dockerd's answers (api/server/middleware/version.go) to a version outside its range, word for word: the
// docker CLI shows them as they are.
Result<void> check_api_version(const http::Request& request) {
  if (request.api_version.empty()) return ok();
  auto version = parse_api_version(request.api_version);
  if (!version) return Error::invalid_argument(fmt::format("invalid API version: {}", request.api_version));
  if (*version > *parse_api_version(kApiVersion)) {
    return Error::invalid_argument(
        fmt::format("client version {} is too new. Maximum supported API version is {}", request.api_version,
                    kApiVersion));
  }
  if (*version < *parse_api_version(kMinApiVersion)) {
    return Error::invalid_argument(fmt::format(
        "client version {} is too old. Minimum supported API version is {}, please upgrade your client to a "
        "newer version",
        request.api_version, kMinApiVersion));
  }
  return ok();
}

http::Handler wrap(http::Handler handler) {
  return [handler = std::move(handler)](http::Request& request) -> Result<http::Reply> {
    KILN_TRY(check_api_version(request));
    http::Reply reply = KILN_TRY(handler(request));
    std::visit([](auto& answer) { add_server_headers(answer.headers); }, reply);
    return reply;
  };
}

}  // namespace

std::optional<std::pair<int, int>> parse_api_version(std::string_view text) {
  size_t dot = text.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  int major = 0;
  int minor = 0;
  auto parse = [](std::string_view part, int& out) {
    if (part.empty() || part.size() > 4) return false;
    auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), out);
    return error == std::errc() && end == part.data() + part.size();
  };
  if (!parse(text.substr(0, dot), major) || !parse(text.substr(dot + 1), minor)) return std::nullopt;
  return std::pair(major, minor);
}

void add_server_headers(http::Headers& headers) {
  headers.set("API-Version", std::string(kApiVersion));
  headers.set("OSType", "linux");
  headers.set("Docker-Experimental", "false");
  headers.set("Server", fmt::format("Kiln/{} (linux)", kVersion));
}

void DockerRoutes::add(std::string method, std::string_view pattern, http::Handler handler) {
  router_.add(std::move(method), pattern, wrap(std::move(handler)));
}

void DockerRoutes::add_streaming_body(std::string method, std::string_view pattern, http::Handler handler) {
  router_.add_streaming_body(std::move(method), pattern, wrap(std::move(handler)));
}

http::Router make_docker_router(DockerContext& context) {
  http::Router router(http::docker_error_body);
  router.set_strip_version_prefix(true);
  DockerRoutes routes(router);
  add_system_routes(routes, context);
  add_image_routes(routes, context);
  add_event_routes(routes, context);
  add_container_routes(routes, context);
  add_volume_routes(routes, context);
  add_network_routes(routes, context);
  add_container_file_routes(routes, context);
  return router;
}

}  // namespace kiln::api::docker

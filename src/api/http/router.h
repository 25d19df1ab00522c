// Router: maps (method, path pattern) to a Handler. Patterns are literal segments and `{name}` captures
// ("/v1/vms/{id}/start"); `{name*}` captures one or more segments, for Docker's slash-carrying image names
// ("/images/{name*}/json"). Unknown path -> 404, known path with another method -> 405 (with Allow), both
// as JSON in the router's error shape. Build it on one thread, then dispatch from any number (const).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/http/message.h"

namespace kiln::api::http {

// "/v1.41/containers/json" -> {"1.41", "/containers/json"}; nullopt without a `^/v[0-9.]+/` prefix.
// Docker clients put their API version there; Kiln's own API ("/v1/...") must not use this.
std::optional<std::pair<std::string_view, std::string_view>> split_version_prefix(std::string_view path);

class Router {
 public:
  explicit Router(ErrorFormatter formatter = docker_error_body) : formatter_(std::move(formatter)) {}

  // Patterns start with '/'. Registering the same method+pattern twice keeps the first (a bug to avoid).
  void add(std::string method, std::string_view pattern, Handler handler);
  // The same, for a handler that reads the body itself from Request::body_reader, as it arrives and without
  // the server's body limit.
  void add_streaming_body(std::string method, std::string_view pattern, Handler handler);
  // Whether `method` on `target` (path and query, as sent) goes to a streaming-body route. The server asks
  // before it reads the body.
  bool streams_body(std::string_view method, std::string_view target) const;
  // Strip a Docker-style version prefix before matching; the version lands in Request::api_version.
  void set_strip_version_prefix(bool on) { strip_version_prefix_ = on; }

  // Routes `request` (filling path, api_version and params). Never fails: handler errors and routing
  // misses come back as error responses in this router's shape.
  Reply dispatch(Request& request) const;
  Response error(const Error& error) const { return error_response(error, formatter_); }
  const ErrorFormatter& error_formatter() const { return formatter_; }

  // What add() registered, in matching order, patterns as written: lets a test hold an API's routes to its
  // document (src/api/rest/openapi_routes_test.cc).
  struct RouteInfo {
    std::string method;
    std::string pattern;
    bool streams_body = false;
  };
  std::vector<RouteInfo> routes() const;

 private:
  struct Segment {
    std::string text;  // literal text, or the capture's name
    bool capture = false;
    bool greedy = false;  // {name*}
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<Segment> segments;
    Handler handler;
    bool streams_body = false;
  };

  // The path a request's target is routed by: no query, no stripped version prefix.
  std::string_view routed_path(std::string_view target) const;

  ErrorFormatter formatter_;
  std::vector<Route> routes_;
  bool strip_version_prefix_ = false;
};

}  // namespace kiln::api::http

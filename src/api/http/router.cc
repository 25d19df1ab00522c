#include "api/http/router.h"

#include <span>

namespace kiln::api::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  // "/a/" and "/a" are the same resource; "/" is no segments at all.
  if (!parts.empty() && parts.back().empty()) parts.pop_back();
  return parts;
}

using RawCaptures = std::vector<std::pair<std::string_view, std::string>>;

// Backtracking match; patterns are short, and only {name*} backtracks.
bool match(std::span<const std::string_view> path, size_t pi, const auto& segments, size_t si,
           RawCaptures& out) {
  if (si == segments.size()) return pi == path.size();
  const auto& segment = segments[si];
  if (!segment.capture) {
    return pi < path.size() && path[pi] == segment.text && match(path, pi + 1, segments, si + 1, out);
  }
  if (!segment.greedy) {
    if (pi >= path.size() || path[pi].empty()) return false;
    out.emplace_back(segment.text, std::string(path[pi]));
    if (match(path, pi + 1, segments, si + 1, out)) return true;
    out.pop_back();
    return false;
  }
  for (size_t end = path.size(); end > pi; --end) {  // greedy: longest first
    std::string joined;
    for (size_t i = pi; i < end; ++i) {
      if (i > pi) joined.push_back('/');
      joined.append(path[i]);
    }
    out.emplace_back(segment.text, std::move(joined));
    if (match(path, end, segments, si + 1, out)) return true;
    out.pop_back();
  }
  return false;
}

}  // namespace

std::optional<std::pair<std::string_view, std::string_view>> split_version_prefix(std::string_view path) {
  if (!path.starts_with("/v")) return std::nullopt;
  size_t end = 2;
  while (end < path.size() && ((path[end] >= '0' && path[end] <= '9') || path[end] == '.')) ++end;
  if (end == 2 || end >= path.size() || path[end] != '/') return std::nullopt;
  return std::pair{path.substr(2, end - 2), path.substr(end)};
}

void Router::add(std::string method, std::string_view pattern, Handler handler) {
  Route route{.method = std::move(method), .pattern = std::string(pattern), .handler = std::move(handler)};
  for (std::string_view part : split_path(pattern)) {
    if (part.size() >= 2 && part.front() == '{' && part.back() == '}') {
      std::string_view name = part.substr(1, part.size() - 2);
      bool greedy = name.ends_with('*');
      if (greedy) name.remove_suffix(1);
      route.segments.push_back({.text = std::string(name), .capture = true, .greedy = greedy});
    } else {
      route.segments.push_back({.text = std::string(part)});
    }
  }
  routes_.push_back(std::move(route));
}

void Router::add_streaming_body(std::string method, std::string_view pattern, Handler handler) {
  add(std::move(method), pattern, std::move(handler));
  routes_.back().streams_body = true;
}

std::vector<Router::RouteInfo> Router::routes() const {
  std::vector<RouteInfo> out;
  for (const Route& route : routes_) {
    out.push_back({.method = route.method, .pattern = route.pattern, .streams_body = route.streams_body});
  }
  return out;
}

std::string_view Router::routed_path(std::string_view target) const {
  std::string_view path = target.substr(0, target.find('?'));
  if (strip_version_prefix_) {
    if (auto split = split_version_prefix(path)) path = split->second;
  }
  return path;
}

bool Router::streams_body(std::string_view method, std::string_view target) const {
  std::vector<std::string_view> parts = split_path(routed_path(target));
  for (const Route& route : routes_) {
    RawCaptures captures;
    if (route.method != method || !match(parts, 0, route.segments, 0, captures)) continue;
    return route.streams_body;  // the first match is the one dispatch() takes
  }
  return false;
}

Reply Router::dispatch(Request& request) const {
  std::string_view path = request.path;
  if (strip_version_prefix_) {
    if (auto split = split_version_prefix(path)) {
      request.api_version = std::string(split->first);
      request.path = std::string(split->second);
      path = request.path;
    }
  }
  std::vector<std::string_view> parts = split_path(path);
  std::string allowed;
  for (const Route& route : routes_) {
    RawCaptures captures;
    if (!match(parts, 0, route.segments, 0, captures)) continue;
    if (route.method != request.method) {
      if (!allowed.empty()) allowed += ", ";
      allowed += route.method;
      continue;
    }
    request.params.clear();
    for (auto& [name, raw] : captures) {
      auto decoded = percent_decode(raw);
      if (!decoded) return error(decoded.error().with_context("path"));
      request.params.emplace(std::string(name), std::move(*decoded));
    }
    Result<Reply> reply = route.handler(request);
    if (!reply) return error(reply.error());
    return std::move(*reply);
  }
  if (allowed.empty()) {
    Response response =
        error(Error::not_found(fmt::format("page not found: {} {}", request.method, request.path)));
    return response;
  }
  int status = 405;
  Error error =
      Error::invalid_argument(fmt::format("method {} not allowed on {}", request.method, request.path));
  Response response = json_response(status, formatter_(status, error));
  response.headers.set("Allow", allowed);
  return response;
}

}  // namespace kiln::api::http

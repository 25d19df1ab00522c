// GET /events: kilnd's events in the Docker Engine API's shape, for `docker events` and the SDKs' events().
// Image events (pull, push, tag, untag, delete, load, import, save), container events (create, start, die,
// stop, kill, attach, destroy, rename, pause, unpause, restart, exec_*) and volume events (create, destroy,
// prune). Kiln's own VM events stay on
// /v1/events. `since` replays what the bus still holds; `until` ends the stream; filters follow dockerd's
// rules (daemon/events/filter.go).
#include <fmt/format.h>

#include <charconv>
#include <chrono>

#include "api/docker/docker_routes.h"
#include "api/docker/filters.h"

namespace kiln::api::docker {
namespace {

using http::Reply;
using http::Request;

// The event types Docker clients know that kilnd emits on this API.
bool served_type(const std::string& type) {
  return type == "image" || type == "container" || type == "volume" || type == "network";
}

// "1700000000", "1700000000.5", "1700000000.123456789" (what the docker CLI sends) -> nanoseconds.
Result<std::optional<int64_t>> timestamp_param(const Request& request, std::string_view key) {
  auto text = request.query.get(key);
  if (!text || text->empty()) return std::optional<int64_t>();
  std::string_view value = *text;
  size_t dot = value.find('.');
  std::string_view whole = value.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? std::string_view() : value.substr(dot + 1);
  int64_t seconds = 0;
  auto [end, error] = std::from_chars(whole.data(), whole.data() + whole.size(), seconds);
  bool digits_only = fraction.size() <= 9 && std::all_of(fraction.begin(), fraction.end(),
                                                         [](char c) { return c >= '0' && c <= '9'; });
  if (error != std::errc() || end != whole.data() + whole.size() || seconds < 0 || !digits_only ||
      seconds > INT64_MAX / 1'000'000'000 - 1) {
    return Error::invalid_argument(
        fmt::format("{} must be a unix timestamp (seconds[.nanoseconds]), not \"{}\"", key, value));
  }
  int64_t nanos = 0;
  for (size_t i = 0; i < 9; ++i) nanos = nanos * 10 + (i < fraction.size() ? fraction[i] - '0' : 0);
  return std::optional<int64_t>(seconds * 1'000'000'000 + nanos);
}

std::string strip_tag(const std::string& name) {
  size_t slash = name.rfind('/');
  size_t colon = name.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
    return name.substr(0, colon);
  return name;
}

// dockerd's ExactMatch: no values for the key, or one equal to `value`.
bool exact(const Filters& filters, std::string_view key, const std::string& value) {
  const auto& values = filters.get(key);
  return values.empty() || std::find(values.begin(), values.end(), value) != values.end();
}

// dockerd's FuzzyMatch: no values for the key, or one that is a prefix of `value`.
bool fuzzy(const Filters& filters, std::string_view key, const std::string& value) {
  const auto& values = filters.get(key);
  return values.empty() || std::any_of(values.begin(), values.end(),
                                       [&value](const std::string& v) { return value.starts_with(v); });
}

bool labels_match(const Filters& filters, const Json& attributes) {
  for (const std::string& label : filters.get("label")) {
    size_t equals = label.find('=');
    std::string key = label.substr(0, equals);
    if (!attributes.contains(key)) return false;
    if (equals != std::string::npos && attributes[key] != label.substr(equals + 1)) return false;
  }
  return true;
}

Json docker_event(const daemon::Event& event) {
  Json attributes = event.attributes.is_object() ? event.attributes : Json::object();
  if (!event.name.empty() && !attributes.contains("name")) attributes["name"] = event.name;
  Json message = {{"Type", event.type},
                  {"Action", event.action},
                  {"Actor", {{"ID", event.id}, {"Attributes", attributes}}},
                  {"scope", "local"},
                  {"time", event.time_nano / 1'000'000'000},
                  {"timeNano", event.time_nano}};
  // dockerd's legacy fields, on container and image events only: status, id, and the image as "from".
  if (event.type == "container" || event.type == "image") {
    message["status"] = event.action;
    message["id"] = event.id;
  }
  if (event.type == "container" && attributes.contains("image")) message["from"] = attributes["image"];
  return message;
}

// `message` is docker_event(event).
bool included(const daemon::Event& event, const Json& message, const Filters& filters) {
  const Json& attributes = message["Actor"]["Attributes"];
  std::string name = attributes.value("name", "");
  std::string image_name = event.type == "image" ? name : attributes.value("image", "");
  bool image = exact(filters, "image", event.id) || exact(filters, "image", image_name) ||
               exact(filters, "image", strip_tag(event.id)) || exact(filters, "image", strip_tag(image_name));
  auto fuzzy_name = [&](std::string_view key) {
    return fuzzy(filters, key, event.id) || fuzzy(filters, key, name);
  };
  return exact(filters, "event", event.action) && exact(filters, "type", event.type) &&
         exact(filters, "scope", "local") && image && fuzzy_name("container") && fuzzy_name("volume") &&
         fuzzy_name("network") && fuzzy_name("plugin") && fuzzy_name("daemon") && fuzzy_name("node") &&
         fuzzy_name("service") && fuzzy_name("secret") && fuzzy_name("config") &&
         labels_match(filters, attributes);
}

}  // namespace

void add_event_routes(DockerRoutes& routes, DockerContext& context) {
  routes.add("GET", "/events", [&context](Request& request) -> Result<Reply> {
    auto since = KILN_TRY(timestamp_param(request, "since"));
    auto until = KILN_TRY(timestamp_param(request, "until"));
    Filters filters = KILN_TRY(
        Filters::parse(request.query, {"config", "container", "daemon", "event", "image", "label", "network",
                                       "node", "plugin", "scope", "secret", "service", "type", "volume"}));
    // Without `since`, only what happens from now on; with it, the bus's memory from that time.
    uint64_t after = since ? 0 : context.events.last_seq();
    http::StreamReply reply;
    reply.headers.set("Content-Type", "application/json");
    daemon::EventBus& bus = context.events;
    reply.body = [&bus, after, since, until, filters](http::ChunkWriter& writer) mutable {
      auto now_nanos = [] {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
      };
      // Replay first: an `until` in the past still gets the events up to it, as from dockerd.
      while (!writer.client_gone() && !bus.closed()) {
        auto wait = after < bus.last_seq() ? std::chrono::milliseconds(0) : std::chrono::milliseconds(200);
        std::string lines;
        bool past_until = false;
        for (const auto& event : bus.wait_after(after, wait)) {
          after = event.seq;
          if (since && event.time_nano < *since) continue;
          if (until && event.time_nano > *until) {
            past_until = true;
            break;
          }
          if (!served_type(event.type)) continue;
          Json message = docker_event(event);
          if (included(event, message, filters)) lines += message.dump() + "\n";
        }
        if (!lines.empty() && !writer.write_chunk(lines)) return;
        if (past_until || (until && now_nanos() > *until)) return;
      }
    };
    return Reply(std::move(reply));
  });
}

}  // namespace kiln::api::docker

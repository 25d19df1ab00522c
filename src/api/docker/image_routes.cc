// /images/...: the image store in the Docker Engine API's shapes, for `docker pull|images|image inspect|
// history|tag|rmi|save|load|push|import|image prune|search`. The work is the image store's (the same calls
// as the Kiln API's /v1/images); this file only translates.
#include <fmt/format.h>

#include <algorithm>

#include "api/docker/docker_routes.h"
#include "api/docker/filters.h"
#include "api/docker/image_json.h"
#include "api/rest/image_json.h"
#include "api/rest/image_transfer.h"
#include "api/rest/progress_stream.h"
#include "common/rfc3339.h"

namespace kiln::api::docker {
namespace {

using http::Reply;
using http::Request;
using rest::progress_stream;

// The store's "no such image" in dockerd's words ("No such image: busybox:latest"), which the docker CLI
// shows and scripts match.
Error docker_image_error(Error error, std::string_view name) {
  if (error.category() != ErrorCategory::kNotFound) return error;
  return Error::not_found(fmt::format("No such image: {}", image_display_name(name)));
}

template <typename T>
Result<T> with_image_errors(Result<T> result, std::string_view name) {
  if (!result) return docker_image_error(std::move(result).error(), name);
  return result;
}

// fromImage + tag as dockerd combines them: a digest "tag" pins, a plain tag replaces the default.
Result<image::ImageRef> pull_reference(std::string_view from_image, std::string_view tag) {
  if (from_image.empty()) return Error::invalid_argument("fromImage or fromSrc is required");
  if (tag.empty()) {
    if (from_image.find(':') == std::string_view::npos && from_image.find('@') == std::string_view::npos)
      return Error::invalid_argument(
          "pulling every tag of a repository (docker pull --all-tags) is not supported by Kiln");
    return image::ImageRef::parse(from_image);
  }
  std::string text(from_image);
  text += tag.starts_with("sha256:") ? "@" : ":";
  text += tag;
  return image::ImageRef::parse(text);
}

// repo + tag of /images/{name}/tag and of an import's target.
Result<image::ImageRef> target_reference(std::string_view repo, std::string_view tag) {
  if (repo.empty()) return Error::invalid_argument("repository name must have at least one component");
  if (!tag.empty() && !image::is_valid_tag(tag))
    return Error::invalid_argument(fmt::format("invalid tag format: \"{}\"", tag));
  std::string text(repo);
  if (!tag.empty()) text += ":" + std::string(tag);
  auto ref = image::ImageRef::parse(text);
  if (!ref) return Error::invalid_argument(ref.error().message());
  if (ref->digest()) return Error::invalid_argument("refusing to create a tag with a digest reference");
  return ref;
}

// dockerd's reference filter keeps only the names that match (so `docker images busybox` lists no other tags
// of the same image) and drops images with none left.
bool filter_names(image::ImageSummary& image, const std::vector<std::string>& patterns) {
  auto keep_matching = [&patterns](std::vector<std::string>& names) {
    std::erase_if(names, [&patterns](const std::string& name) {
      auto ref = image::ImageRef::parse(name);
      std::string familiar = ref ? ref->familiar() : name;
      return std::none_of(patterns.begin(), patterns.end(), [&familiar](const std::string& pattern) {
        return reference_matches(pattern, familiar);
      });
    });
  };
  keep_matching(image.tags);
  keep_matching(image.repo_digests);
  return !image.tags.empty() || !image.repo_digests.empty();
}

Result<bool> matches(image::ImageSummary& image, const Filters& filters, const std::optional<int64_t>& before,
                     const std::optional<int64_t>& since) {
  if (auto dangling = KILN_TRY(filters.boolean("dangling")); dangling && *dangling != image.tags.empty())
    return false;
  if (filters.has("reference") && !filter_names(image, filters.get("reference"))) return false;
  int64_t created = static_cast<int64_t>(parse_rfc3339(image.record.created).value_or(0));
  if (before && created >= *before) return false;
  if (since && created <= *since) return false;
  return true;
}

// before= and since= name an image; the filter compares creation times, as dockerd's does.
Result<std::optional<int64_t>> created_of(DockerContext& context, const Filters& filters,
                                          std::string_view key) {
  const auto& values = filters.get(key);
  if (values.empty()) return std::optional<int64_t>();
  auto details = KILN_TRY(with_image_errors(context.images.inspect(values.front()), values.front()));
  return std::optional<int64_t>(
      static_cast<int64_t>(parse_rfc3339(details.summary.record.created).value_or(0)));
}

Result<Reply> list_images(DockerContext& context, const Request& request) {
  Filters filters =
      KILN_TRY(Filters::parse(request.query, {"dangling", "reference", "before", "since", "label"}));
  if (filters.has("label"))
    return Error::invalid_argument("the label filter on images is not supported by Kiln yet");
  auto before = KILN_TRY(created_of(context, filters, "before"));
  auto since = KILN_TRY(created_of(context, filters, "since"));
  Json list = Json::array();
  for (auto& image : KILN_TRY(context.images.list())) {
    if (KILN_TRY(matches(image, filters, before, since))) list.push_back(image_summary_json(image));
  }
  return Reply(http::json_response(200, list));
}

// POST /images/create?fromImage=: a registry pull; ?fromSrc=-: an import of the request body.
Result<Reply> create_image(DockerContext& context, Request& request) {
  std::string from_src(request.query.get("fromSrc").value_or(""));
  if (!from_src.empty()) {
    if (from_src != "-")
      return Error::invalid_argument(
          "importing from a URL is not supported by Kiln: send the tarball (fromSrc=-)");
    std::optional<image::ImageRef> tag;
    std::string repo(request.query.get("repo").value_or(""));
    if (!repo.empty()) tag = KILN_TRY(target_reference(repo, request.query.get("tag").value_or("")));
    rest::SpooledBody body = KILN_TRY(rest::spool_body(request, context.scratch_dir));
    auto id = context.images.import(body.path, tag);
    if (!id) return rest::archive_error(id.error(), body.path);
    http::Response response = http::text_response(
        200, rest::progress_message_json(id->to_string()).dump() + "\n", "application/json");
    return Reply(std::move(response));
  }
  image::ImageRef ref = KILN_TRY(
      pull_reference(request.query.get("fromImage").value_or(""), request.query.get("tag").value_or("")));
  image::PullOptions options{.credentials = KILN_TRY(rest::registry_credentials(request))};
  image::ImageStore& images = context.images;
  return progress_stream([&images, ref, options](image::ProgressListener& progress) -> Result<Json> {
    KILN_TRY(rest::pull_with_status(images, ref, options, progress));
    return Json(nullptr);  // dockerd's pull stream carries no result object
  });
}

// POST /images/load: `docker load` reads {"stream": "Loaded image: NAME\n"} lines.
Result<Reply> load_images(DockerContext& context, Request& request) {
  rest::SpooledBody body = KILN_TRY(rest::spool_body(request, context.scratch_dir));
  // The store says what it loaded ("Loaded image: NAME", "Loaded image ID: ID" for untagged ones), in the
  // words `docker load` prints; dockerd's `quiet` only hides progress bars, so those lines always go out.
  struct LoadedLines final : image::ProgressListener {
    std::string out;
    void on_progress(const image::ProgressEvent&) override {}
    void on_message(std::string_view text) override {
      if (text.starts_with("Loaded image")) out += Json{{"stream", std::string(text) + "\n"}}.dump() + "\n";
    }
  } lines;
  auto ids = context.images.load(body.path, {}, lines);
  if (!ids) return rest::archive_error(ids.error(), body.path);
  return Reply(http::text_response(200, lines.out, "application/json"));
}

Result<Reply> save_images(DockerContext& context, const std::vector<std::string>& names) {
  if (names.empty()) return Error::invalid_argument("name at least one image to save");
  for (const auto& name : names) KILN_TRY(with_image_errors(context.images.resolve(name), name));
  auto dir = std::make_shared<TempDir>(
      KILN_TRY_CONTEXT(TempDir::create("save-", context.scratch_dir), "scratch space"));
  std::string path = dir->path() + "/images.tar";
  KILN_TRY(context.images.save(names, path));
  return rest::file_stream("application/x-tar", path, dir);
}

Result<Reply> push_image(DockerContext& context, Request& request) {
  std::string name(request.param("name"));
  std::string tag(request.query.get("tag").value_or(""));
  image::ImageRef target = KILN_TRY(target_reference(name, tag));
  std::string source = target.to_string();
  image::PushOptions options{.credentials = KILN_TRY(rest::registry_credentials(request))};
  KILN_TRY(with_image_errors(context.images.resolve(source), target.familiar()));
  image::ImageStore& images = context.images;
  return progress_stream(
      [&images, source, target, options](image::ProgressListener& progress) -> Result<Json> {
        progress.on_message(fmt::format("The push refers to repository [{}]", target.repository()));
        image::Digest digest = KILN_TRY(images.push(source, target, options, progress));
        return Json{{"Tag", target.tag().value_or("")}, {"Digest", digest.to_string()}};
      });
}

Result<Reply> prune_images(DockerContext& context, const Request& request) {
  Filters filters = KILN_TRY(Filters::parse(request.query, {"dangling", "until", "label"}));
  if (filters.has("until") || filters.has("label"))
    return Error::invalid_argument(
        "the until and label filters of image prune are not supported by Kiln yet");
  auto dangling = KILN_TRY(filters.boolean("dangling"));
  bool all = dangling && !*dangling;  // docker image prune -a sends dangling=false
  auto report = KILN_TRY(context.images.prune(all));
  Json deleted = Json::array();
  for (const auto& id : report.deleted_images) deleted.push_back({{"Deleted", id.to_string()}});
  return Reply(http::json_response(200, {{"ImagesDeleted", deleted.empty() ? Json(nullptr) : deleted},
                                         {"SpaceReclaimed", report.bytes_freed}}));
}

// dockerd refuses to remove an image a container was created from (its root filesystem): without force while
// any container uses it, and at all while one runs. Kiln's containers boot from the image's EROFS, so a
// forced removal that would delete it is refused too, while the image keeps another tag it goes ahead.
Result<void> check_not_in_use(DockerContext& context, const std::string& name, bool force) {
  auto id = context.images.resolve(name);
  if (!id) return ok();  // the removal itself reports a missing image
  auto details = KILN_TRY(context.images.inspect(id->to_string()));
  bool last_name =
      details.summary.tags.size() <= 1 || name.starts_with("sha256:") || id->hex().starts_with(name);
  for (const auto& container : KILN_TRY(context.containers.list())) {
    if (container.config.image_id != id->to_string()) continue;
    bool running = container.state == daemon::containers::ContainerState::kRunning ||
                   container.state == daemon::containers::ContainerState::kPaused;
    std::string short_id = id->hex().substr(0, 12);
    if (running && (force || last_name)) {
      return Error::already_exists(fmt::format(
          "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
          short_id, container.id.substr(0, 12)));
    }
    if (!force && last_name) {
      return Error::already_exists(fmt::format(
          "conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its "
          "referenced image {}",
          name, container.id.substr(0, 12), short_id));
    }
    if (force && last_name) {
      return Error::already_exists(
          fmt::format("conflict: unable to delete {} - image is being used by stopped container {} (Kiln "
                      "keeps an image a "
                      "container was created from: remove the container first)",
                      short_id, container.id.substr(0, 12)));
    }
  }
  return ok();
}

}  // namespace

void add_image_routes(DockerRoutes& routes, DockerContext& context) {
  routes.add("GET", "/images/json", [&context](Request& request) { return list_images(context, request); });
  routes.add_streaming_body("POST", "/images/create",
                            [&context](Request& request) { return create_image(context, request); });
  routes.add_streaming_body("POST", "/images/load",
                            [&context](Request& request) { return load_images(context, request); });
  routes.add("GET", "/images/get", [&context](Request& request) -> Result<Reply> {
    std::vector<std::string> names;
    for (auto name : request.query.get_all("names")) names.emplace_back(name);
    return save_images(context, names);
  });
  routes.add("POST", "/images/prune",
             [&context](Request& request) { return prune_images(context, request); });
  // Kiln has no index to search; an empty result (not an error) keeps scripts that search working.
  routes.add("GET", "/images/search", [](Request& request) -> Result<Reply> {
    if (request.query.get("term").value_or("").empty())
      return Error::invalid_argument("the term parameter is required");
    return Reply(http::json_response(200, Json::array()));
  });

  routes.add("GET", "/images/{name*}/json", [&context](Request& request) -> Result<Reply> {
    std::string name(request.param("name"));
    auto details = KILN_TRY(with_image_errors(context.images.inspect(name), name));
    return Reply(http::json_response(200, image_inspect_json(details)));
  });
  routes.add("GET", "/images/{name*}/history", [&context](Request& request) -> Result<Reply> {
    std::string name(request.param("name"));
    auto details = KILN_TRY(with_image_errors(context.images.inspect(name), name));
    return Reply(http::json_response(200, image_history_json(details)));
  });
  routes.add("GET", "/images/{name*}/get", [&context](Request& request) {
    return save_images(context, {std::string(request.param("name"))});
  });
  routes.add("POST", "/images/{name*}/tag", [&context](Request& request) -> Result<Reply> {
    std::string name(request.param("name"));
    image::ImageRef target = KILN_TRY(
        target_reference(request.query.get("repo").value_or(""), request.query.get("tag").value_or("")));
    KILN_TRY(with_image_errors(context.images.tag(name, target), name));
    return Reply(http::empty_response(201));
  });
  routes.add("POST", "/images/{name*}/push",
             [&context](Request& request) { return push_image(context, request); });
  routes.add("DELETE", "/images/{name*}", [&context](Request& request) -> Result<Reply> {
    std::string name(request.param("name"));
    KILN_TRY(check_not_in_use(context, name, request.query.get_bool("force")));
    auto report =
        KILN_TRY(with_image_errors(context.images.remove(name, request.query.get_bool("force")), name));
    return Reply(http::json_response(200, rest::remove_report_json(report)));
  });
}

}  // namespace kiln::api::docker

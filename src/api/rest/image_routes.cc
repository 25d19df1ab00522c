// /v1/images: the image store served by kilnd, so `kiln image` (and later the Docker API) never opens the
// store behind the daemon's back. Pull, push, load and rootfs builds stream Docker-style JSON progress;
// load and import take the archive as the request body (streamed to a scratch file, never into memory);
// save answers with the tar itself.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <memory>

#include "api/rest/image_json.h"
#include "api/rest/image_transfer.h"
#include "api/rest/progress_stream.h"
#include "api/rest/rest_api.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::api::rest {
namespace {

using http::Reply;
using http::Request;

Result<image::ImageRef> reference_param(const Request& request, std::string_view key = "reference") {
  auto text = request.query.get(key);
  if (!text || text->empty())
    return Error::invalid_argument(fmt::format("the {} query parameter is required", key));
  return image::ImageRef::parse(*text);
}

Result<uint64_t> unsigned_param(const Request& request, std::string_view key) {
  auto text = request.query.get(key);
  if (!text || text->empty()) return uint64_t{0};
  return KILN_TRY(request.query.get_unsigned<uint64_t>(key)).value_or(0);
}

}  // namespace

void add_image_routes(http::Router& router, ApiContext& context) {
  image::ImageStore& images = context.images;
  const std::string& scratch = context.scratch_dir;

  router.add("GET", "/v1/images", [&images](Request&) -> Result<Reply> {
    Json array = Json::array();
    for (const auto& image : KILN_TRY(images.list())) array.push_back(image_summary_json(image));
    return Reply(http::json_response(200, array));
  });

  router.add("POST", "/v1/images/pull", [&images](Request& request) -> Result<Reply> {
    image::ImageRef ref = KILN_TRY(reference_param(request));
    image::PullOptions options{.credentials = KILN_TRY(registry_credentials(request))};
    return progress_stream([&images, ref, options](image::ProgressListener& progress) -> Result<Json> {
      image::Digest id = KILN_TRY(pull_with_status(images, ref, options, progress));
      return Json{{"ID", id.to_string()}};
    });
  });

  router.add_streaming_body(
      "POST", "/v1/images/load", [&images, &scratch](Request& request) -> Result<Reply> {
        image::LoadOptions options;
        if (auto repository = request.query.get("repository"); repository && !repository->empty())
          options.repository = std::string(*repository);
        auto body = std::make_shared<SpooledBody>(KILN_TRY(spool_body(request, scratch)));
        return progress_stream([&images, body, options](image::ProgressListener& progress) -> Result<Json> {
          auto loaded = images.load(body->path, options, progress);
          if (!loaded) return archive_error(loaded.error(), body->path);
          const auto& ids = *loaded;
          Json list = Json::array();
          for (const auto& id : ids) list.push_back(id.to_string());
          return Json{{"IDs", list}};
        });
      });

  router.add_streaming_body("POST", "/v1/images/import",
                            [&images, &scratch](Request& request) -> Result<Reply> {
                              std::optional<image::ImageRef> tag;
                              if (auto text = request.query.get("reference"); text && !text->empty())
                                tag = KILN_TRY(image::ImageRef::parse(*text));
                              SpooledBody body = KILN_TRY(spool_body(request, scratch));
                              auto id = images.import(body.path, tag);
                              if (!id) return archive_error(id.error(), body.path);
                              return Reply(http::json_response(201, Json{{"Id", id->to_string()}}));
                            });

  router.add("GET", "/v1/images/save", [&images, &scratch](Request& request) -> Result<Reply> {
    std::vector<std::string> names;
    for (auto name : request.query.get_all("names")) names.emplace_back(name);
    if (names.empty()) return Error::invalid_argument("name at least one image: ?names=NAME (repeatable)");
    auto dir =
        std::make_shared<TempDir>(KILN_TRY_CONTEXT(TempDir::create("save-", scratch), "scratch space"));
    std::string path = dir->path() + "/images.tar";
    KILN_TRY(images.save(names, path));
    return file_stream("application/x-tar", path, dir);
  });

  router.add("POST", "/v1/images/prune", [&images](Request& request) -> Result<Reply> {
    auto report = KILN_TRY(images.prune(request.query.get_bool("all")));
    return Reply(http::json_response(200, prune_report_json(report)));
  });

  router.add("GET", "/v1/images/{name*}/json", [&images](Request& request) -> Result<Reply> {
    auto details = KILN_TRY(images.inspect(request.param("name")));
    return Reply(http::json_response(200, image_details_json(details)));
  });

  router.add("POST", "/v1/images/{name*}/tag", [&images](Request& request) -> Result<Reply> {
    image::ImageRef target = KILN_TRY(reference_param(request));
    KILN_TRY(images.tag(request.param("name"), target));
    return Reply(http::empty_response(201));
  });

  router.add("POST", "/v1/images/{name*}/push", [&images](Request& request) -> Result<Reply> {
    std::string source(request.param("name"));
    image::ImageRef target = request.query.has("reference") ? KILN_TRY(reference_param(request))
                                                            : KILN_TRY(image::ImageRef::parse(source));
    image::PushOptions options{.credentials = KILN_TRY(registry_credentials(request)),
                               .chunk_size = KILN_TRY(unsigned_param(request, "chunk_size"))};
    KILN_TRY(images.resolve(source));  // an unknown image is a 404, not a stream that fails
    return progress_stream(
        [&images, source, target, options](image::ProgressListener& progress) -> Result<Json> {
          progress.on_message(fmt::format("The push refers to repository [{}]", target.repository()));
          image::Digest digest = KILN_TRY(images.push(source, target, options, progress));
          return Json{{"Tag", target.tag().value_or("")}, {"Digest", digest.to_string()}};
        });
  });

  router.add("POST", "/v1/images/{name*}/rootfs", [&images](Request& request) -> Result<Reply> {
    std::string name(request.param("name"));
    KILN_TRY(images.resolve(name));
    return progress_stream([&images, name](image::ProgressListener& progress) -> Result<Json> {
      return Json{{"Rootfs", KILN_TRY(images.rootfs_image(name, progress))}};
    });
  });

  router.add("DELETE", "/v1/images/{name*}", [&images](Request& request) -> Result<Reply> {
    auto report = KILN_TRY(images.remove(request.param("name"), request.query.get_bool("force")));
    return Reply(http::json_response(200, remove_report_json(report)));
  });
}

}  // namespace kiln::api::rest

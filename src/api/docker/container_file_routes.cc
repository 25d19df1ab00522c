// The container filesystem routes of the Docker Engine API: HEAD/GET/PUT /containers/{id}/archive (docker
// cp), GET /containers/{id}/export, GET /containers/{id}/changes (docker diff) and POST /commit, answered as
// dockerd 20.10 answers them. The work is ContainerFiles' (src/daemon/containers/container_files.cc); the
// archive streams run on the connection thread, which holds the container's files open until the stream ends.
#include <fmt/format.h>

#include <memory>

#include "api/docker/docker_routes.h"
#include "common/encoding.h"
#include "common/log.h"

namespace kiln::api::docker {
namespace {

using daemon::containers::ContainerFiles;
using http::Reply;
using http::Request;

constexpr std::string_view kStatHeader = "X-Docker-Container-Path-Stat";

Result<std::string> path_param(const Request& request) {
  auto path = request.query.get("path");
  // dockerd's words, missing space included.
  if (!path || path->empty()) return Error::invalid_argument("bad parameter: pathcannot be empty");
  return std::string(*path);
}

// The archive as a chunked body; `files` (the container's lock, a VM started for it) lives until it ends.
http::StreamReply archive_stream(
    std::string content_type, std::shared_ptr<ContainerFiles> files,
    std::function<Result<void>(ContainerFiles&, const daemon::containers::ArchiveSink&)> produce) {
  http::StreamReply reply;
  reply.headers.set("Content-Type", std::move(content_type));
  reply.body = [files = std::move(files), produce = std::move(produce)](http::ChunkWriter& writer) mutable {
    auto sent =
        produce(*files, [&writer](std::string_view data) { return writer.write_chunk(data).has_value(); });
    // The status line is gone already: a failure can only end the stream early, which the client sees as a
    // truncated archive (dockerd does the same).
    if (!sent) log::warn("container archive stream ended early", {{"error", sent.error().message()}});
    files.reset();
  };
  return reply;
}

Result<Reply> stat_reply(ContainerFiles& files, const std::string& path) {
  std::string stat = KILN_TRY(files.stat(path));
  http::Response response = http::empty_response(200);
  response.headers.set(std::string(kStatHeader), base64_encode(stat));
  return Reply(std::move(response));
}

}  // namespace

void add_container_file_routes(DockerRoutes& routes, DockerContext& context) {
  routes.add("HEAD", "/containers/{id}/archive", [&context](Request& request) -> Result<Reply> {
    std::string path = KILN_TRY(path_param(request));
    auto files = KILN_TRY(context.containers.open_files(std::string(request.param("id"))));
    return stat_reply(*files, path);
  });
  routes.add("GET", "/containers/{id}/archive", [&context](Request& request) -> Result<Reply> {
    std::string path = KILN_TRY(path_param(request));
    std::shared_ptr<ContainerFiles> files =
        KILN_TRY(context.containers.open_files(std::string(request.param("id"))));
    std::string stat = KILN_TRY(files->stat(path));
    http::StreamReply reply =
        archive_stream("application/x-tar", files,
                       [path](ContainerFiles& open, const daemon::containers::ArchiveSink& sink) {
                         return open.get_archive(path, sink);
                       });
    reply.headers.set(std::string(kStatHeader), base64_encode(stat));
    return Reply(std::move(reply));
  });
  routes.add_streaming_body("PUT", "/containers/{id}/archive", [&context](Request& request) -> Result<Reply> {
    std::string path = KILN_TRY(path_param(request));
    auto files = KILN_TRY(context.containers.open_files(std::string(request.param("id"))));
    http::BodyReader* body = request.body_reader;
    daemon::containers::ArchiveSource source = [body](char* buffer, size_t size) -> Result<size_t> {
      if (!body) return size_t{0};
      return body->read(buffer, size);
    };
    KILN_TRY(files->put_archive(path, request.query.get_bool("noOverwriteDirNonDir"),
                                request.query.get_bool("copyUIDGID"), source));
    return Reply(http::empty_response(200));
  });
  routes.add("GET", "/containers/{id}/export", [&context](Request& request) -> Result<Reply> {
    std::shared_ptr<ContainerFiles> files =
        KILN_TRY(context.containers.open_files(std::string(request.param("id"))));
    return Reply(archive_stream("application/octet-stream", files,
                                [](ContainerFiles& open, const daemon::containers::ArchiveSink& sink) {
                                  return open.export_root(sink);
                                }));
  });
  routes.add("POST", "/commit", [&context](Request& request) -> Result<Reply> {
    std::string container(request.query.get("container").value_or(""));
    daemon::containers::CommitOptions options{
        .repo = std::string(request.query.get("repo").value_or("")),
        .tag = std::string(request.query.get("tag").value_or("")),
        .comment = std::string(request.query.get("comment").value_or("")),
        .author = std::string(request.query.get("author").value_or(""))};
    for (auto change : request.query.get_all("changes")) {
      // The CLI sends each --change as its own parameter; one may hold several lines.
      size_t start = 0;
      while (start <= change.size()) {
        size_t end = change.find('\n', start);
        if (end == std::string_view::npos) end = change.size();
        if (end > start) options.changes.emplace_back(change.substr(start, end - start));
        start = end + 1;
      }
    }
    if (!request.body.empty()) {
      auto body = parse_json(request.body);
      if (!body) return Error::invalid_argument(body.error().message());
      if (body->is_object()) options.config = *body;
    }
    std::string id = KILN_TRY(context.containers.commit(container, options));
    return Reply(http::json_response(201, {{"Id", id}}));
  });
  routes.add("GET", "/containers/{id}/changes", [&context](Request& request) -> Result<Reply> {
    auto files = KILN_TRY(context.containers.open_files(std::string(request.param("id"))));
    auto changes = KILN_TRY(files->changes());
    files.reset();
    if (changes.empty()) return Reply(http::json_response(200, Json(nullptr)));  // dockerd answers null
    Json out = Json::array();
    for (const auto& change : changes)
      out.push_back({{"Path", change.path}, {"Kind", static_cast<int>(change.kind)}});
    return Reply(http::json_response(200, out));
  });
}

}  // namespace kiln::api::docker

// Moving images over HTTP: see image_transfer.h.
#include "api/rest/image_transfer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <vector>

#include "common/unique_fd.h"

namespace kiln::api::rest {

using http::Reply;
using http::Request;

Result<std::optional<image::RegistryCredentials>> registry_credentials(const Request& request) {
  auto header = request.headers.get("X-Registry-Auth");
  if (!header) return std::optional<image::RegistryCredentials>();
  return image::decode_registry_auth(*header);
}

Result<SpooledBody> spool_body(Request& request, const std::string& scratch_dir) {
  if (request.body_reader == nullptr) return Error::internal("route registered without a streaming body");
  TempDir dir = KILN_TRY_CONTEXT(TempDir::create("upload-", scratch_dir), "scratch space for the upload");
  std::string path = dir.path() + "/body";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return Error::last_os_error(fmt::format("create {}", path));
  std::vector<char> buffer(size_t{256} * 1024);
  uint64_t total = 0;
  for (;;) {
    size_t n =
        KILN_TRY_CONTEXT(request.body_reader->read(buffer.data(), buffer.size()), "receiving the archive");
    if (n == 0) break;
    total += n;
    for (size_t done = 0; done < n;) {
      ssize_t written = ::write(fd.get(), buffer.data() + done, n - done);
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) return Error::last_os_error(fmt::format("write {}", path));
      done += static_cast<size_t>(written);
    }
  }
  if (total == 0) return Error::invalid_argument("the request body is empty: send the archive as the body");
  return SpooledBody{.dir = std::move(dir), .path = path};
}

Result<image::Digest> pull_with_status(image::ImageStore& images, const image::ImageRef& ref,
                                       const image::PullOptions& options, image::ProgressListener& progress) {
  auto before = images.resolve(ref.to_string());
  image::Digest id = KILN_TRY(images.pull(ref, options, progress));
  bool unchanged = before && *before == id;
  progress.on_message(fmt::format(
      "Status: {} {}", unchanged ? "Image is up to date for" : "Downloaded newer image for", ref.familiar()));
  return id;
}

Error archive_error(const Error& error, const std::string& spool_path) {
  std::string message = error.message();
  for (size_t at; (at = message.find(spool_path)) != std::string::npos;)
    message.replace(at, spool_path.size(), "the archive");
  ErrorCategory category = error.category();
  if (category == ErrorCategory::kProtocol || category == ErrorCategory::kUnsupported)
    category = ErrorCategory::kInvalidArgument;
  return Error(category, message);
}

// The file at `path` as the response body, read in chunks; `keep` lives until the stream ends.
Reply file_stream(std::string content_type, std::string path, std::shared_ptr<void> keep) {
  http::StreamReply reply;
  reply.headers.set("Content-Type", std::move(content_type));
  reply.body = [path = std::move(path), keep = std::move(keep)](http::ChunkWriter& writer) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return;  // nothing sensible to send: the cut stream tells the client
    std::vector<char> buffer(size_t{256} * 1024);
    for (;;) {
      ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      if (!writer.write_chunk(std::string_view(buffer.data(), static_cast<size_t>(n)))) return;
    }
  };
  return reply;
}

}  // namespace kiln::api::rest

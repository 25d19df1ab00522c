// Moving images over HTTP, shared by the Kiln API's /v1/images and the Docker Engine API's /images: registry
// credentials from Docker's X-Registry-Auth header, uploaded archives spooled to scratch files (never held in
// memory), errors about them worded for their sender, and files streamed back as response bodies.
// Stateless functions; any connection thread.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "api/http/message.h"
#include "common/error.h"
#include "common/temp_dir.h"
#include "image/image_store.h"
#include "image/registry_client.h"

namespace kiln::api::rest {

// The credentials in X-Registry-Auth (base64url JSON), if the request has that header. 400 when malformed.
Result<std::optional<image::RegistryCredentials>> registry_credentials(const http::Request& request);

// A request body received into `<scratch>/upload-XXXXXX/body`. The TempDir removes it.
struct SpooledBody {
  TempDir dir;
  std::string path;
};
// Reads a streaming-body route's body to its end; an empty body is a 400.
Result<SpooledBody> spool_body(http::Request& request, const std::string& scratch_dir);

// A registry pull that ends with dockerd's closing status line ("Status: Downloaded newer image for X" or
// "Status: Image is up to date for X"). Returns the image ID.
Result<image::Digest> pull_with_status(image::ImageStore& images, const image::ImageRef& ref,
                                       const image::PullOptions& options, image::ProgressListener& progress);

// An error about an uploaded archive as its sender should read it: a bad archive is bad input (400, not the
// 502 a malformed registry answer gets), and the scratch path means nothing to the client.
Error archive_error(const Error& error, const std::string& spool_path);

// The file at `path` as a chunked response body; `keep` (e.g. the TempDir holding it) lives until the stream
// ends.
http::Reply file_stream(std::string content_type, std::string path, std::shared_ptr<void> keep);

}  // namespace kiln::api::rest

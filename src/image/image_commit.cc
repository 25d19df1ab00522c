// ImageStore::commit: `docker commit`'s new image, the base image's manifest with one more layer (the
// container's writable layer as an uncompressed tar with OCI whiteouts) and a config that keeps the base's
// history and rootfs and carries the container's configuration.
#include <fcntl.h>
#include <unistd.h>

#include <ctime>

#include "common/unique_fd.h"
#include "image/image_store.h"

namespace kiln::image {
namespace {

std::string now_rfc3339() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  std::tm utc{};
  ::gmtime_r(&now.tv_sec, &utc);
  char text[32];
  (void)std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:09d}Z", text, now.tv_nsec);
}

}  // namespace

Result<Digest> ImageStore::commit(const CommitRequest& request) {
  auto lock = KILN_TRY(shared_store_lock());
  Digest base_id = KILN_TRY(resolve(request.base));
  auto record = KILN_TRY(db_->find_image(base_id));
  if (!record) return Error::not_found(fmt::format("no such image: {}", request.base));
  auto [base_manifest, base_config] = KILN_TRY(read_image(*record));

  UniqueFd input(::open(request.layer_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!input) return Error::last_os_error(fmt::format("open {}", request.layer_path));
  KILN_TRY_CONTEXT(verify_tar_layer(input.get()), "the container's layer");
  if (::lseek(input.get(), 0, SEEK_SET) != 0) return Error::last_os_error("rewind the container's layer");
  Digest layer_digest =
      KILN_TRY(blobs_->ingest_file(input.get()));  // uncompressed: its digest is its diff_id

  std::string created = now_rfc3339();
  Json config = base_config.raw;
  config["created"] = created;
  config["config"] = request.config;
  if (!request.author.empty()) {
    config["author"] = request.author;
  } else {
    config.erase("author");
  }
  config.erase("container");
  config.erase("container_config");
  config["rootfs"]["diff_ids"].push_back(layer_digest.to_string());
  Json history = {{"created", created}, {"created_by", request.created_by}};
  if (!request.author.empty()) history["author"] = request.author;
  if (!request.comment.empty()) history["comment"] = request.comment;
  if (!config.contains("history") || !config["history"].is_array()) config["history"] = Json::array();
  config["history"].push_back(history);
  std::string config_text = config.dump();
  Digest config_digest = KILN_TRY(blobs_->write(config_text));

  Manifest manifest = base_manifest;
  bool oci = manifest.media_type == media_type::kOciManifest;
  manifest.config.digest = config_digest;
  manifest.config.size = static_cast<int64_t>(config_text.size());
  manifest.layers.push_back(
      {.media_type = std::string(oci ? media_type::kOciLayer : media_type::kDockerLayer),
       .digest = layer_digest,
       .size = static_cast<int64_t>(KILN_TRY(blobs_->size(layer_digest)))});
  Digest manifest_digest = KILN_TRY(blobs_->write(manifest_to_json(manifest)));
  std::vector<ImageRef> tags;
  if (request.tag) tags.push_back(*request.tag);
  NullProgress quiet;
  return register_image(manifest_digest, tags, {}, quiet);
}

}  // namespace kiln::image

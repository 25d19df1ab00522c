// MetadataDb: the image store's SQLite database (WAL): images, their tags and repo digests, and the
// manifests they were pulled under. Blobs live in the BlobStore; this holds only what names point where.
// Thread-safe: one connection guarded by a mutex; several processes may share the file (busy timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "image/digest.h"

struct sqlite3;

namespace kiln::image {

struct ImageRecord {
  Digest id;               // the config digest, as Docker's image ID
  Digest manifest_digest;  // the platform manifest
  std::string created;     // from the config (RFC 3339), may be empty
  int64_t size = 0;        // compressed layers + config, bytes
  int64_t added_at = 0;    // unix seconds when the store first got it
};

class MetadataDb {
 public:
  static Result<std::unique_ptr<MetadataDb>> open(const std::string& path);
  ~MetadataDb();
  MetadataDb(const MetadataDb&) = delete;
  MetadataDb& operator=(const MetadataDb&) = delete;

  // Inserts or replaces the image row.
  Result<void> put_image(const ImageRecord& image);
  Result<std::optional<ImageRecord>> find_image(const Digest& id);
  // Images whose ID starts with `hex_prefix`.
  Result<std::vector<ImageRecord>> find_images_by_prefix(const std::string& hex_prefix);
  Result<std::vector<ImageRecord>> list_images();
  // Deletes the image and every tag and repo digest pointing at it.
  Result<void> remove_image(const Digest& id);

  // `ref` is a normalized "domain/path:tag" string. Moves the tag if it pointed elsewhere.
  Result<void> set_tag(const std::string& ref, const Digest& image);
  Result<std::optional<Digest>> tag_target(const std::string& ref);
  Result<bool> remove_tag(const std::string& ref);
  Result<std::vector<std::string>> tags_of(const Digest& image);

  // `ref` is "domain/path@sha256:..." (a manifest or index digest the image was pulled or pushed as).
  Result<void> add_repo_digest(const std::string& ref, const Digest& image);
  Result<std::optional<Digest>> repo_digest_target(const std::string& ref);
  Result<std::vector<std::string>> repo_digests_of(const Digest& image);
  Result<void> remove_repo_digests_of_repository(const std::string& repository, const Digest& image);

 private:
  explicit MetadataDb(sqlite3* db) : db_(db) {}
  Result<void> exec(const std::string& sql);
  sqlite3* db_;
  std::mutex mutex_;
};

}  // namespace kiln::image

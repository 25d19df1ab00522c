// MetadataDb: the image store's SQLite database (metadata.db, WAL): images, their tags and repo digests, and
// the manifests they were pulled under. Blobs live in the BlobStore; this holds only what names point where.
// Owns its Database; any thread (one connection behind a lock); processes may share the file (busy timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "image/digest.h"
#include "store/database.h"

namespace kiln::image {

struct ImageRecord {
  Digest id;               // the config digest, as Docker's image ID
  Digest manifest_digest;  // the platform manifest
  std::string created;     // from the config (RFC 3339), may be empty
  int64_t size = 0;        // compressed layers + config, bytes
  int64_t added_at = 0;    // unix seconds when the store first got it
};

// metadata.db's schema history. Version 1 is the first release's schema, which had no version record: such
// a file is adopted as version 1 as it is.
extern const store::Schema kMetadataDbSchema;

class MetadataDb {
 public:
  // Opens (creating or migrating) the file; kUnsupported when a newer Kiln wrote it.
  static Result<std::unique_ptr<MetadataDb>> open(const std::string& path);

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
  explicit MetadataDb(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  std::unique_ptr<store::Database> db_;
};

}  // namespace kiln::image

#include "image/metadata.h"

#include <ctime>

namespace kiln::image {
namespace {

using store::Statement;

// Append only: a released step is never edited; a change of schema is a new step with the next number,
// plus a seed in metadata_test.cc so the step is tested from every earlier version.
constexpr store::Migration kMetadataDbMigrations[] = {
    {1, "images, tags and repo digests (the first release's schema, which had no version record)", R"(
    CREATE TABLE images (
      id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, created TEXT NOT NULL,
      size INTEGER NOT NULL, added_at INTEGER NOT NULL);
    CREATE TABLE tags (
      ref TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE TABLE repo_digests (
      ref TEXT PRIMARY KEY, repository TEXT NOT NULL,
      image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE INDEX tags_by_image ON tags(image_id);
    CREATE INDEX repo_digests_by_image ON repo_digests(image_id);
  )"},
};

constexpr std::string_view kImageColumns = "id, manifest_digest, created, size, added_at";

Result<ImageRecord> image_from_row(const Statement& row) {
  return ImageRecord{.id = KILN_TRY(Digest::parse(row.text(0))),
                     .manifest_digest = KILN_TRY(Digest::parse(row.text(1))),
                     .created = row.text(2),
                     .size = row.integer(3),
                     .added_at = row.integer(4)};
}

Result<std::vector<ImageRecord>> collect_images(Statement& stmt) {
  std::vector<ImageRecord> images;
  while (KILN_TRY(stmt.step())) images.push_back(KILN_TRY(image_from_row(stmt)));
  return images;
}

Result<std::vector<std::string>> collect_texts(Statement& stmt) {
  std::vector<std::string> texts;
  while (KILN_TRY(stmt.step())) texts.push_back(stmt.text(0));
  return texts;
}

}  // namespace

constinit const store::Schema kMetadataDbSchema{
    .name = "metadata.db", .migrations = kMetadataDbMigrations, .unversioned_version = 1};

Result<std::unique_ptr<MetadataDb>> MetadataDb::open(const std::string& path) {
  auto db = KILN_TRY(store::Database::open(path, kMetadataDbSchema));
  return std::unique_ptr<MetadataDb>(new MetadataDb(std::move(db)));  // NOLINT: private constructor
}

Result<void> MetadataDb::put_image(const ImageRecord& image) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare(R"(
    INSERT INTO images (id, manifest_digest, created, size, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT(id) DO UPDATE SET manifest_digest = ?2, created = ?3, size = ?4)"));
  int64_t added = image.added_at ? image.added_at : static_cast<int64_t>(std::time(nullptr));
  return stmt.bind(1, image.id.to_string())
      .bind(2, image.manifest_digest.to_string())
      .bind(3, image.created)
      .bind(4, image.size)
      .bind(5, added)
      .run();
}

Result<std::optional<ImageRecord>> MetadataDb::find_image(const Digest& id) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare(fmt::format("SELECT {} FROM images WHERE id = ?1", kImageColumns)));
  stmt.bind(1, id.to_string());
  if (!KILN_TRY(stmt.step())) return std::optional<ImageRecord>();
  return std::optional<ImageRecord>(KILN_TRY(image_from_row(stmt)));
}

Result<std::vector<ImageRecord>> MetadataDb::find_images_by_prefix(const std::string& hex_prefix) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(
      session.prepare(fmt::format("SELECT {} FROM images WHERE substr(id, 1, ?2) = ?1", kImageColumns)));
  std::string prefix = "sha256:" + hex_prefix;
  stmt.bind(1, prefix).bind(2, static_cast<int64_t>(prefix.size()));
  return collect_images(stmt);
}

Result<std::vector<ImageRecord>> MetadataDb::list_images() {
  auto session = db_->lock();
  auto stmt = KILN_TRY(
      session.prepare(fmt::format("SELECT {} FROM images ORDER BY added_at DESC, id", kImageColumns)));
  return collect_images(stmt);
}

Result<void> MetadataDb::remove_image(const Digest& id) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("DELETE FROM images WHERE id = ?1"));
  return stmt.bind(1, id.to_string()).run();
}

Result<void> MetadataDb::set_tag(const std::string& ref, const Digest& image) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare(
      "INSERT INTO tags (ref, image_id) VALUES (?1, ?2) ON CONFLICT(ref) DO UPDATE SET image_id = ?2"));
  return stmt.bind(1, ref).bind(2, image.to_string()).run();
}

Result<std::optional<Digest>> MetadataDb::tag_target(const std::string& ref) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("SELECT image_id FROM tags WHERE ref = ?1"));
  stmt.bind(1, ref);
  if (!KILN_TRY(stmt.step())) return std::optional<Digest>();
  return std::optional<Digest>(KILN_TRY(Digest::parse(stmt.text(0))));
}

Result<bool> MetadataDb::remove_tag(const std::string& ref) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("DELETE FROM tags WHERE ref = ?1"));
  KILN_TRY(stmt.bind(1, ref).run());
  return stmt.changes() > 0;
}

Result<std::vector<std::string>> MetadataDb::tags_of(const Digest& image) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("SELECT ref FROM tags WHERE image_id = ?1 ORDER BY ref"));
  stmt.bind(1, image.to_string());
  return collect_texts(stmt);
}

Result<void> MetadataDb::add_repo_digest(const std::string& ref, const Digest& image) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare(R"(
    INSERT INTO repo_digests (ref, repository, image_id) VALUES (?1, ?2, ?3)
    ON CONFLICT(ref) DO UPDATE SET image_id = ?3)"));
  return stmt.bind(1, ref).bind(2, ref.substr(0, ref.find('@'))).bind(3, image.to_string()).run();
}

Result<std::optional<Digest>> MetadataDb::repo_digest_target(const std::string& ref) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("SELECT image_id FROM repo_digests WHERE ref = ?1"));
  stmt.bind(1, ref);
  if (!KILN_TRY(stmt.step())) return std::optional<Digest>();
  return std::optional<Digest>(KILN_TRY(Digest::parse(stmt.text(0))));
}

Result<std::vector<std::string>> MetadataDb::repo_digests_of(const Digest& image) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("SELECT ref FROM repo_digests WHERE image_id = ?1 ORDER BY ref"));
  stmt.bind(1, image.to_string());
  return collect_texts(stmt);
}

Result<void> MetadataDb::remove_repo_digests_of_repository(const std::string& repository,
                                                           const Digest& image) {
  auto session = db_->lock();
  auto stmt = KILN_TRY(session.prepare("DELETE FROM repo_digests WHERE repository = ?1 AND image_id = ?2"));
  return stmt.bind(1, repository).bind(2, image.to_string()).run();
}

}  // namespace kiln::image

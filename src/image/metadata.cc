#include "image/metadata.h"

#include <sqlite3.h>

#include <ctime>

namespace kiln::image {
namespace {

Error sqlite_error(sqlite3* db, std::string_view what) {
  int code = sqlite3_errcode(db);
  std::string message = fmt::format("image metadata: {}: {}", what, sqlite3_errmsg(db));
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return Error::unavailable(message);
  return Error(ErrorCategory::kIo, message);
}

// One prepared statement; finalized on destruction.
class Statement {
 public:
  static Result<Statement> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
      return sqlite_error(db, "prepare");
    }
    return Statement(db, stmt);
  }
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_) sqlite3_finalize(stmt_);
  }

  Statement& bind(int index, const std::string& text) {
    sqlite3_bind_text(stmt_, index, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  // True while rows come; false when done.
  Result<bool> step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return sqlite_error(db_, "step");
  }
  Result<void> run() {
    KILN_TRY(step());
    return ok();
  }
  std::string text(int column) const {
    const unsigned char* value = sqlite3_column_text(stmt_, column);
    return value ? reinterpret_cast<const char*>(value) : "";
  }
  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  int changes() const { return sqlite3_changes(db_); }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
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

Result<std::unique_ptr<MetadataDb>> MetadataDb::open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<MetadataDb> self(new MetadataDb(db));
  if (rc != SQLITE_OK) return sqlite_error(db, fmt::format("open {}", path));
  sqlite3_busy_timeout(db, 30000);
  KILN_TRY(self->exec("PRAGMA journal_mode=WAL"));
  KILN_TRY(self->exec("PRAGMA foreign_keys=ON"));
  KILN_TRY(self->exec(R"(
    CREATE TABLE IF NOT EXISTS images (
      id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, created TEXT NOT NULL,
      size INTEGER NOT NULL, added_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS tags (
      ref TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE TABLE IF NOT EXISTS repo_digests (
      ref TEXT PRIMARY KEY, repository TEXT NOT NULL,
      image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE INDEX IF NOT EXISTS tags_by_image ON tags(image_id);
    CREATE INDEX IF NOT EXISTS repo_digests_by_image ON repo_digests(image_id);
  )"));
  return self;
}

MetadataDb::~MetadataDb() {
  sqlite3_close_v2(db_);
}

Result<void> MetadataDb::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    return Error(ErrorCategory::kIo, fmt::format("image metadata: {}", text));
  }
  return ok();
}

Result<void> MetadataDb::put_image(const ImageRecord& image) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, R"(
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
  std::lock_guard lock(mutex_);
  auto stmt =
      KILN_TRY(Statement::prepare(db_, fmt::format("SELECT {} FROM images WHERE id = ?1", kImageColumns)));
  stmt.bind(1, id.to_string());
  if (!KILN_TRY(stmt.step())) return std::optional<ImageRecord>();
  return std::optional<ImageRecord>(KILN_TRY(image_from_row(stmt)));
}

Result<std::vector<ImageRecord>> MetadataDb::find_images_by_prefix(const std::string& hex_prefix) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(
      db_, fmt::format("SELECT {} FROM images WHERE substr(id, 1, ?2) = ?1", kImageColumns)));
  std::string prefix = "sha256:" + hex_prefix;
  stmt.bind(1, prefix).bind(2, static_cast<int64_t>(prefix.size()));
  return collect_images(stmt);
}

Result<std::vector<ImageRecord>> MetadataDb::list_images() {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(
      db_, fmt::format("SELECT {} FROM images ORDER BY added_at DESC, id", kImageColumns)));
  return collect_images(stmt);
}

Result<void> MetadataDb::remove_image(const Digest& id) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, "DELETE FROM images WHERE id = ?1"));
  return stmt.bind(1, id.to_string()).run();
}

Result<void> MetadataDb::set_tag(const std::string& ref, const Digest& image) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(
      db_, "INSERT INTO tags (ref, image_id) VALUES (?1, ?2) ON CONFLICT(ref) DO UPDATE SET image_id = ?2"));
  return stmt.bind(1, ref).bind(2, image.to_string()).run();
}

Result<std::optional<Digest>> MetadataDb::tag_target(const std::string& ref) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, "SELECT image_id FROM tags WHERE ref = ?1"));
  stmt.bind(1, ref);
  if (!KILN_TRY(stmt.step())) return std::optional<Digest>();
  return std::optional<Digest>(KILN_TRY(Digest::parse(stmt.text(0))));
}

Result<bool> MetadataDb::remove_tag(const std::string& ref) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, "DELETE FROM tags WHERE ref = ?1"));
  KILN_TRY(stmt.bind(1, ref).run());
  return stmt.changes() > 0;
}

Result<std::vector<std::string>> MetadataDb::tags_of(const Digest& image) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, "SELECT ref FROM tags WHERE image_id = ?1 ORDER BY ref"));
  stmt.bind(1, image.to_string());
  return collect_texts(stmt);
}

Result<void> MetadataDb::add_repo_digest(const std::string& ref, const Digest& image) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, R"(
    INSERT INTO repo_digests (ref, repository, image_id) VALUES (?1, ?2, ?3)
    ON CONFLICT(ref) DO UPDATE SET image_id = ?3)"));
  return stmt.bind(1, ref).bind(2, ref.substr(0, ref.find('@'))).bind(3, image.to_string()).run();
}

Result<std::optional<Digest>> MetadataDb::repo_digest_target(const std::string& ref) {
  std::lock_guard lock(mutex_);
  auto stmt = KILN_TRY(Statement::prepare(db_, "SELECT image_id FROM repo_digests WHERE ref = ?1"));
  stmt.bind(1, ref);
  if (!KILN_TRY(stmt.step())) return std::optional<Digest>();
  return std::optional<Digest>(KILN_TRY(Digest::parse(stmt.text(0))));
}

Result<std::vector<std::string>> MetadataDb::repo_digests_of(const Digest& image) {
  std::lock_guard lock(mutex_);
  auto stmt =
      KILN_TRY(Statement::prepare(db_, "SELECT ref FROM repo_digests WHERE image_id = ?1 ORDER BY ref"));
  stmt.bind(1, image.to_string());
  return collect_texts(stmt);
}

Result<void> MetadataDb::remove_repo_digests_of_repository(const std::string& repository,
                                                           const Digest& image) {
  std::lock_guard lock(mutex_);
  auto stmt =
      KILN_TRY(Statement::prepare(db_, "DELETE FROM repo_digests WHERE repository = ?1 AND image_id = ?2"));
  return stmt.bind(1, repository).bind(2, image.to_string()).run();
}

}  // namespace kiln::image

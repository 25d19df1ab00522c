#include "daemon/state/sqlite_db.h"

#include <fmt/format.h>
#include <sqlite3.h>

namespace kiln::daemon {
namespace {

Error sqlite_error(sqlite3* db, std::string_view what) {
  int code = sqlite3_extended_errcode(db);
  std::string message = fmt::format("state database: {}: {}", what, sqlite3_errmsg(db));
  if ((code & 0xff) == SQLITE_CONSTRAINT) return Error::already_exists(std::move(message));
  if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
    return Error::unavailable(std::move(message));
  return Error::internal(std::move(message));
}

}  // namespace

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Result<bool> Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_error(db_, "step");
}

std::string Statement::text(int column) const {
  const unsigned char* value = sqlite3_column_text(stmt_, column);
  return value ? std::string(reinterpret_cast<const char*>(value)) : std::string();
}

int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

int Statement::changes() const {
  return sqlite3_changes(db_);
}

Result<std::unique_ptr<SqliteDb>> SqliteDb::open(const std::string& path,
                                                 const std::vector<std::string>& migrations) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw));  // NOLINT: private constructor; owns raw even on failure
  if (rc != SQLITE_OK) return sqlite_error(raw, fmt::format("open {}", path));
  sqlite3_busy_timeout(raw, 10000);
  auto guard = db->lock();
  KILN_TRY(db->exec("PRAGMA journal_mode=WAL"));
  KILN_TRY(db->exec("PRAGMA synchronous=NORMAL"));
  KILN_TRY(db->exec("PRAGMA foreign_keys=ON"));
  KILN_TRY(db->migrate(migrations));
  return db;
}

SqliteDb::~SqliteDb() {
  sqlite3_close_v2(db_);
}

Result<void> SqliteDb::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    Error error = sqlite_error(db_, "exec");
    return Error(error.category(), fmt::format("state database: {}", text));
  }
  return ok();
}

Result<Statement> SqliteDb::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
    return sqlite_error(db_, fmt::format("prepare {}", sql));
  }
  return Statement(db_, stmt);
}

Result<void> SqliteDb::migrate(const std::vector<std::string>& migrations) {
  KILN_TRY(exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
  KILN_TRY(exec("BEGIN IMMEDIATE"));
  auto result = apply_migrations(migrations);
  if (!result) {
    (void)exec("ROLLBACK");
    return result;
  }
  KILN_TRY(exec("COMMIT"));
  return ok();
}

Result<void> SqliteDb::apply_migrations(const std::vector<std::string>& migrations) {
  int version = 0;
  {
    auto query = KILN_TRY(prepare("SELECT version FROM schema_version"));
    if (KILN_TRY(query.step())) version = static_cast<int>(query.integer(0));
  }
  if (version > static_cast<int>(migrations.size())) {
    return Error::unsupported(fmt::format(
        "state database schema version {} is newer than this kilnd understands ({}); upgrade kilnd", version,
        migrations.size()));
  }
  for (size_t i = static_cast<size_t>(version); i < migrations.size(); ++i) KILN_TRY(exec(migrations[i]));
  KILN_TRY(exec("DELETE FROM schema_version"));
  KILN_TRY(exec(fmt::format("INSERT INTO schema_version VALUES ({})", migrations.size())));
  schema_version_ = static_cast<int>(migrations.size());
  return ok();
}

}  // namespace kiln::daemon

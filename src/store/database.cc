#include "store/database.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include "kiln/version.h"

namespace kiln::store {
namespace {

constexpr std::string_view kVersionTable = "schema_version";

// The one place SQLite result codes become Kiln error categories.
ErrorCategory category_of(int code) {
  switch (code) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
      return ErrorCategory::kAlreadyExists;
    case SQLITE_CONSTRAINT_FOREIGNKEY:  // refers to a row that is not there, or is still referred to
      return ErrorCategory::kFailedPrecondition;
    default:
      break;
  }
  switch (code & 0xff) {     // the primary code of an extended one
    case SQLITE_CONSTRAINT:  // NOT NULL, CHECK: the statement is wrong
      return ErrorCategory::kInternal;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorCategory::kUnavailable;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return ErrorCategory::kPermissionDenied;
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_NOTADB:
    case SQLITE_NOLFS:
      return ErrorCategory::kIo;
    default:  // SQL errors, misuse, range: a bug in Kiln
      return ErrorCategory::kInternal;
  }
}

// "<name>: <what>: <SQLite's message>", categorized by `code`.
Error sqlite_error(sqlite3* db, int code, std::string_view name, std::string_view what) {
  return Error(category_of(code),
               fmt::format("{}: {}: {}", name, what, db ? sqlite3_errmsg(db) : sqlite3_errstr(code)));
}

struct StoredVersion {
  int version = 0;
  bool recorded = false;  // false: no version table (a new file, or one from before versioning)
};

Result<bool> has_table(Session& session, std::string_view table) {
  auto query = KILN_TRY(session.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"));
  query.bind(1, table);
  return query.step();
}

Result<StoredVersion> read_stored_version(Session& session, const Schema& schema) {
  if (KILN_TRY(has_table(session, kVersionTable))) {
    auto query = KILN_TRY(session.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version"));
    KILN_TRY(query.step());
    return StoredVersion{.version = static_cast<int>(query.integer(0)), .recorded = true};
  }
  auto tables = KILN_TRY(session.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"));
  if (!KILN_TRY(tables.step())) return StoredVersion{};
  if (schema.unversioned_version > 0) return StoredVersion{.version = schema.unversioned_version};
  return Error::unsupported(fmt::format(
      "{} has tables (such as {}) but no schema version: it was not written by Kiln; refusing to change it",
      schema.name, tables.text(0)));
}

Result<void> refuse_if_newer(const StoredVersion& stored, const Schema& schema) {
  int latest = static_cast<int>(schema.migrations.size());
  if (stored.version <= latest) return ok();
  return Error::unsupported(
      fmt::format("{} has schema version {}, newer than this Kiln ({}) understands ({}); upgrade Kiln",
                  schema.name, stored.version, kVersion, latest));
}

// A step may rebuild a table (SQLite's ALTER TABLE recipe), which needs foreign keys off while it runs;
// what the steps leave behind is checked before the transaction commits.
Result<void> check_foreign_keys(Session& session, const Schema& schema) {
  auto check = KILN_TRY(session.prepare("PRAGMA foreign_key_check"));
  if (!KILN_TRY(check.step())) return ok();
  return Error::internal(
      fmt::format("{}: the migration leaves a row of table {} whose foreign key has no target", schema.name,
                  check.text(0)));
}

}  // namespace

Result<void> validate(const Schema& schema) {
  for (size_t i = 0; i < schema.migrations.size(); ++i) {
    const Migration& step = schema.migrations[i];
    if (step.version != static_cast<int>(i + 1)) {
      return Error::internal(
          fmt::format("{}: migration list: entry {} has version {}, expected {} (versions run "
                      "1, 2, 3, ... without gaps)",
                      schema.name, i + 1, step.version, i + 1));
    }
    if (step.sql.empty() || step.description.empty()) {
      return Error::internal(fmt::format("{}: migration list: version {} has no SQL or no description",
                                         schema.name, step.version));
    }
  }
  if (schema.unversioned_version < 0 ||
      schema.unversioned_version > static_cast<int>(schema.migrations.size())) {
    return Error::internal(
        fmt::format("{}: unversioned files adopted at version {}, which the list does not have", schema.name,
                    schema.unversioned_version));
  }
  return ok();
}

// Statement

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_),
      stmt_(std::exchange(other.stmt_, nullptr)),
      name_(other.name_),
      bind_error_(other.bind_error_),
      bind_error_index_(other.bind_error_index_) {}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement& Statement::check_bind(int rc, int index) {
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) {
    bind_error_ = rc;
    bind_error_index_ = index;
  }
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  return check_bind(
      sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT), index);
}

Statement& Statement::bind(int index, int64_t value) {
  return check_bind(sqlite3_bind_int64(stmt_, index, value), index);
}

Statement& Statement::bind_null(int index) {
  return check_bind(sqlite3_bind_null(stmt_, index), index);
}

Result<bool> Statement::step() {
  if (bind_error_ != SQLITE_OK) {
    return Error(category_of(bind_error_), fmt::format("{}: bind parameter {}: {}", name_, bind_error_index_,
                                                       sqlite3_errstr(bind_error_)));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_error(db_, rc, name_, "step");
}

Result<void> Statement::run() {
  while (KILN_TRY(step())) {
  }
  return ok();
}

std::string Statement::text(int column) const {
  const unsigned char* value = sqlite3_column_text(stmt_, column);
  if (!value) return {};
  return std::string(reinterpret_cast<const char*>(value),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

int Statement::changes() const {
  return sqlite3_changes(db_);
}

// Transaction

Transaction::Transaction(Transaction&& other) noexcept : session_(std::exchange(other.session_, nullptr)) {}

Transaction::~Transaction() {
  // After a failed statement SQLite may already have rolled back (autocommit is on again).
  if (session_ && !sqlite3_get_autocommit(session_->db_)) {
    sqlite3_exec(session_->db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

Result<void> Transaction::commit() {
  if (!session_) return Error::internal("commit of a transaction that is over");
  auto done = session_->exec("COMMIT");
  // A COMMIT that fails with SQLITE_BUSY leaves the transaction open; the destructor rolls it back.
  if (done || sqlite3_get_autocommit(session_->db_)) session_ = nullptr;
  return done;
}

// Session

Result<Statement> Session::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(db_, rc, name_, fmt::format("prepare \"{}\"", sql));
  return Statement(db_, stmt, name_);
}

Result<void> Session::exec(std::string_view sql) {
  std::string terminated(sql);
  int rc = sqlite3_exec(db_, terminated.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(db_, rc, name_, "exec");
  return ok();
}

Result<Transaction> Session::begin() {
  KILN_TRY(exec("BEGIN IMMEDIATE"));
  return Transaction(*this);
}

// Database

Result<std::unique_ptr<Database>> Database::open(const std::string& path, const Schema& schema,
                                                 OpenOptions options) {
  KILN_TRY(validate(schema));
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  // Owns `raw` even when the open failed (SQLite hands back a handle to close unless out of memory).
  std::unique_ptr<Database> db(new Database(raw, schema.name));  // NOLINT: private constructor
  if (rc != SQLITE_OK) return sqlite_error(raw, rc, schema.name, fmt::format("open {}", path));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count()));
  KILN_TRY(db->migrate(schema));
  return db;
}

Database::~Database() {
  sqlite3_close_v2(db_);
}

Result<void> Database::migrate(const Schema& schema) {
  auto session = lock();
  // Read before anything is written: a file from a newer Kiln is left exactly as it is.
  StoredVersion stored = KILN_TRY(read_stored_version(session, schema));
  KILN_TRY(refuse_if_newer(stored, schema));
  // WAL: readers do not block the writer; NORMAL sync is durable across crashes of the process, and in WAL
  // mode the file stays consistent across power loss (the last transactions may be lost).
  KILN_TRY(session.exec("PRAGMA journal_mode=WAL"));
  KILN_TRY(session.exec("PRAGMA synchronous=NORMAL"));
  int latest = static_cast<int>(schema.migrations.size());
  if (stored.recorded && stored.version == latest) {
    KILN_TRY(session.exec("PRAGMA foreign_keys=ON"));
    schema_version_ = latest;
    return ok();
  }
  // foreign_keys cannot change inside a transaction, so it is switched off around it.
  KILN_TRY(session.exec("PRAGMA foreign_keys=OFF"));
  KILN_TRY(apply_missing_steps(session, schema));
  KILN_TRY(session.exec("PRAGMA foreign_keys=ON"));
  return ok();
}

Result<void> Database::apply_missing_steps(Session& session, const Schema& schema) {
  auto transaction = KILN_TRY(session.begin());
  // Another process may have migrated the file between the first read and this write lock.
  StoredVersion stored = KILN_TRY(read_stored_version(session, schema));
  KILN_TRY(refuse_if_newer(stored, schema));
  int latest = static_cast<int>(schema.migrations.size());
  for (int version = stored.version + 1; version <= latest; ++version) {
    const Migration& step = schema.migrations[static_cast<size_t>(version - 1)];
    KILN_TRY_CONTEXT(session.exec(step.sql),
                     fmt::format("migration to version {} ({})", version, step.description));
  }
  if (!stored.recorded || stored.version != latest) {
    KILN_TRY(session.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
    KILN_TRY(session.exec("DELETE FROM schema_version"));
    auto record = KILN_TRY(session.prepare("INSERT INTO schema_version (version) VALUES (?1)"));
    KILN_TRY(record.bind(1, static_cast<int64_t>(latest)).run());
  }
  KILN_TRY(check_foreign_keys(session, schema));
  KILN_TRY(transaction.commit());
  schema_version_ = latest;
  return ok();
}

}  // namespace kiln::store

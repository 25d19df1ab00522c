// SqliteDb: kilnd's state database (one SQLite file in WAL mode under --root) with versioned migrations.
// One connection guarded by a mutex: callers hold a Transaction (or call exec) and never keep a Statement
// across threads. Crash-safe by SQLite's journal; schema upgrades run in one transaction at open.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kiln::daemon {

class Statement {
 public:
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& other) noexcept;
  ~Statement();

  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, int64_t value);
  // true: a row is available; false: done. Constraint violations come back as kAlreadyExists.
  Result<bool> step();
  std::string text(int column) const;
  int64_t integer(int column) const;
  int changes() const;

 private:
  friend class SqliteDb;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class SqliteDb {
 public:
  // A migration brings the schema from version `index` to `index + 1`.
  static Result<std::unique_ptr<SqliteDb>> open(const std::string& path,
                                                const std::vector<std::string>& migrations);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Everything below requires holding lock().
  std::unique_lock<std::mutex> lock() { return std::unique_lock(mutex_); }
  Result<void> exec(const std::string& sql);
  Result<Statement> prepare(std::string_view sql);
  int schema_version() const { return schema_version_; }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  Result<void> migrate(const std::vector<std::string>& migrations);
  Result<void> apply_migrations(const std::vector<std::string>& migrations);
  sqlite3* db_;
  std::mutex mutex_;
  int schema_version_ = 0;
};

}  // namespace kiln::daemon

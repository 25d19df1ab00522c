// Database: one SQLite file (WAL, busy timeout, foreign keys on) whose schema is a numbered list of
// migrations, applied at open. The Database owns one connection and a mutex; a thread uses it through a
// Session (lock()), and Statements and Transactions it makes belong to that thread until the Session ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kiln::store {

// One step of a database's schema history: brings the schema from `version - 1` to `version`. A list is
// append only (a released step is never edited) and numbered 1..N without gaps. Steps run inside the open's
// one transaction with foreign keys off, so a step may rebuild a table (SQLite's ALTER TABLE recipe,
// https://sqlite.org/lang_altertable.html#otheralter); the rows they leave are checked against foreign keys
// before commit. A step never says BEGIN, COMMIT or PRAGMA journal_mode itself.
struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;  // one or more statements
};

// What a database file is: its name in messages ("kiln.db") and its schema history.
struct Schema {
  std::string_view name;
  std::span<const Migration> migrations;
  // A file with tables but no version record predates versioning (the image store's first release wrote
  // one): it is taken to be at this version, its rows untouched. 0: such a file is refused as foreign.
  int unversioned_version = 0;
};

struct OpenOptions {
  // How long a statement waits for another process's lock before failing with kUnavailable.
  std::chrono::milliseconds busy_timeout = std::chrono::seconds(30);
};

// Versions 1..N, in order, without gaps, each with SQL: kInternal (a bug in the list) otherwise.
Result<void> validate(const Schema& schema);

class Session;

// One prepared statement, finalized on destruction. Used only by the thread holding the Session it came
// from, and only while that Session lives.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based (?1, ?2, ...). A bind that fails (index out of range) makes the next step()
  // fail with that error.
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, int64_t value);
  Statement& bind_null(int index);

  // true: a row is ready for the column accessors; false: done. Constraint violations come back as
  // kAlreadyExists, a lock held too long by another process as kUnavailable.
  Result<bool> step();
  // Steps to the end (for statements that return no rows).
  Result<void> run();

  // Columns are 0-based. NULL reads as "" and 0.
  std::string text(int column) const;
  int64_t integer(int column) const;
  bool is_null(int column) const;
  // Rows changed by the last INSERT/UPDATE/DELETE on this connection.
  int changes() const;

 private:
  friend class Session;
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string_view name) : db_(db), stmt_(stmt), name_(name) {}
  Statement& check_bind(int rc, int index);
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string_view name_;  // the Database's, which outlives every Session
  int bind_error_ = 0;     // SQLITE_OK
  int bind_error_index_ = 0;
};

// BEGIN IMMEDIATE on construction (Session::begin); ROLLBACK on destruction unless commit() succeeded.
class Transaction {
 public:
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction();

  Result<void> commit();

 private:
  friend class Session;
  explicit Transaction(Session& session) : session_(&session) {}
  Session* session_;  // null once committed, rolled back or moved from
};

// Exclusive use of the Database's connection for one thread, until destruction.
class Session {
 public:
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Result<Statement> prepare(std::string_view sql);
  // Runs one or more statements that return no rows.
  Result<void> exec(std::string_view sql);
  // One write transaction; nested transactions are an error (kInternal).
  Result<Transaction> begin();

 private:
  friend class Database;
  friend class Transaction;
  Session(sqlite3* db, std::string_view name, std::mutex& mutex) : db_(db), name_(name), lock_(mutex) {}
  sqlite3* db_;
  std::string_view name_;
  std::unique_lock<std::mutex> lock_;
};

class Database {
 public:
  // Opens (creating if missing) the file at `path` and brings it to the schema's latest version: every
  // step above the stored one runs, all in one transaction with the new version, so a failing step leaves
  // the file at its old version. A file at a newer version than the list knows is refused (kUnsupported)
  // and not written to; so is a file with tables but no version record unless the schema adopts it.
  static Result<std::unique_ptr<Database>> open(const std::string& path, const Schema& schema,
                                                OpenOptions options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Blocks until no other thread holds a Session.
  Session lock() { return Session(db_, name_, mutex_); }
  const std::string& name() const { return name_; }
  int schema_version() const { return schema_version_; }

 private:
  Database(sqlite3* db, std::string_view name) : db_(db), name_(name) {}
  Result<void> migrate(const Schema& schema);
  Result<void> apply_missing_steps(Session& session, const Schema& schema);
  sqlite3* db_;
  std::string name_;
  std::mutex mutex_;
  int schema_version_ = 0;
};

}  // namespace kiln::store

// Test helpers for databases: files left at an earlier schema version, and plain sqlite3 connections of their
// own, as another program or an older Kiln release opens a file (compatibility fixtures in a release's exact
// SQL). For tests only (link SQLite::SQLite3); each call opens and closes its own connections; one thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

#include "common/temp_dir.h"
#include "store/database.h"

namespace kiln::store::testing {

// The schema as a release that had only its first `count` steps knew it.
inline Schema first_steps(const Schema& schema, size_t count) {
  Schema partial = schema;
  partial.migrations = schema.migrations.first(count);
  return partial;
}

// A new file at `path` as successive releases up to `version` left it: opened with the first 1, 2, ...,
// `version` steps in turn, with seeds[i] (rows in that version's SQL) written on reaching version i + 1.
template <typename Seeds>
Result<void> build_at_version(const std::string& path, const Schema& schema, const Seeds& seeds,
                              size_t version) {
  KILN_TRY(remove_tree(path));
  for (size_t reached = 1; reached <= version; ++reached) {
    auto db = KILN_TRY(Database::open(path, first_steps(schema, reached)));
    KILN_TRY(db->lock().exec(seeds[reached - 1]));
  }
  return ok();
}

using RawParam = std::variant<std::string_view, int64_t>;

// Runs one statement with ?1, ?2, ... bound to `params` (or, without params, a script of several) on a
// connection of its own. Returns "" on success, SQLite's message otherwise. `first_integer` gets column 0 of
// the first row, if any.
inline std::string exec_raw(const std::string& path, const std::string& sql,
                            std::initializer_list<RawParam> params = {}, int64_t* first_integer = nullptr) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    std::string message = sqlite3_errmsg(db);
    sqlite3_close(db);
    return message;
  }
  std::string message;
  if (params.size() == 0 && !first_integer) {
    char* text = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &text) != SQLITE_OK) message = text ? text : "error";
    sqlite3_free(text);
  } else {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      message = sqlite3_errmsg(db);
    } else {
      int index = 1;
      for (const RawParam& param : params) {
        if (const auto* text = std::get_if<std::string_view>(&param)) {
          sqlite3_bind_text(stmt, index++, text->data(), static_cast<int>(text->size()), SQLITE_TRANSIENT);
        } else {
          sqlite3_bind_int64(stmt, index++, std::get<int64_t>(param));
        }
      }
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW && first_integer) *first_integer = sqlite3_column_int64(stmt, 0);
      while (rc == SQLITE_ROW) rc = sqlite3_step(stmt);
      if (rc != SQLITE_DONE) message = sqlite3_errmsg(db);
      sqlite3_finalize(stmt);
    }
  }
  sqlite3_close(db);
  return message;
}

// Column 0 of the first row of `sql`, or -1 when there is no row or the query fails.
inline int64_t query_integer_raw(const std::string& path, const std::string& sql) {
  int64_t value = -1;
  if (!exec_raw(path, sql, {}, &value).empty()) return -1;
  return value;
}

}  // namespace kiln::store::testing

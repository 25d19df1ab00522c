// Test helpers: plain sqlite3 connections of their own, as another program or an older Kiln release opens a
// database file, without kiln_store in the way (to write compatibility fixtures with a release's exact SQL).
// For tests only (link SQLite::SQLite3); each call opens and closes its own connection; one thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace kiln::store::testing {

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

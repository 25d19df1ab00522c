// DocumentTable: one kiln.db table of JSON documents keyed by a 64-hex id, with a unique name and the order
// of creation (VMs, containers). Lookups resolve as Docker resolves container references: exact id, exact
// name, then a unique id prefix. Names are a UNIQUE column, so of concurrent inserts of one name exactly
// one wins. Any thread (calls serialize on the database's session lock).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "store/database.h"

namespace kiln::daemon {

class DocumentTable {
 public:
  // `table` has columns (id TEXT PRIMARY KEY, name TEXT UNIQUE, record TEXT, created_seq INTEGER)
  // (schema.cc); `what` names a row in messages ("VM", "container").
  DocumentTable(store::Database& db, std::string table, std::string what)
      : db_(db), table_(std::move(table)), what_(std::move(what)) {}

  // kAlreadyExists when the id or name is taken.
  Result<void> insert(const std::string& id, const std::string& name, const std::string& record);
  // kNotFound when the row is gone.
  Result<void> update(const std::string& id, const std::string& name, const std::string& record);
  Result<void> remove(const std::string& id);
  Result<std::optional<std::string>> get(const std::string& id);
  // The record of the row `reference` names. kNotFound "no such <what>: X", or kInvalidArgument for an
  // ambiguous id prefix.
  Result<std::string> resolve(const std::string& reference);
  // Every record, oldest first.
  Result<std::vector<std::string>> list();

 private:
  Result<bool> name_taken_as_such(Result<bool> stepped, const std::string& name) const;
  store::Database& db_;
  std::string table_;
  std::string what_;
};

}  // namespace kiln::daemon

#include "daemon/state/document_table.h"

#include <fmt/format.h>

namespace kiln::daemon {

// A UNIQUE violation on a write is the name: said so.
Result<bool> DocumentTable::name_taken_as_such(Result<bool> stepped, const std::string& name) const {
  if (!stepped && stepped.error().category() == ErrorCategory::kAlreadyExists)
    return Error::already_exists(fmt::format("the name \"{}\" is already in use by another {}", name, what_));
  return stepped;
}

Result<void> DocumentTable::insert(const std::string& id, const std::string& name,
                                   const std::string& record) {
  auto session = db_.lock();
  auto statement = KILN_TRY(
      session.prepare(fmt::format("INSERT INTO {0} (id, name, record, created_seq) VALUES (?1, ?2, ?3,"
                                  " (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM {0}))",
                                  table_)));
  statement.bind(1, id).bind(2, name).bind(3, record);
  KILN_TRY(name_taken_as_such(statement.step(), name));
  return ok();
}

Result<void> DocumentTable::update(const std::string& id, const std::string& name,
                                   const std::string& record) {
  auto session = db_.lock();
  auto statement =
      KILN_TRY(session.prepare(fmt::format("UPDATE {} SET name = ?2, record = ?3 WHERE id = ?1", table_)));
  statement.bind(1, id).bind(2, name).bind(3, record);
  KILN_TRY(name_taken_as_such(statement.step(), name));
  if (statement.changes() == 0) return Error::not_found(fmt::format("no such {}: {}", what_, id));
  return ok();
}

Result<void> DocumentTable::remove(const std::string& id) {
  auto session = db_.lock();
  auto statement = KILN_TRY(session.prepare(fmt::format("DELETE FROM {} WHERE id = ?1", table_)));
  statement.bind(1, id);
  KILN_TRY(statement.step());
  return ok();
}

Result<std::optional<std::string>> DocumentTable::get(const std::string& id) {
  auto session = db_.lock();
  auto statement = KILN_TRY(session.prepare(fmt::format("SELECT record FROM {} WHERE id = ?1", table_)));
  statement.bind(1, id);
  if (!KILN_TRY(statement.step())) return std::optional<std::string>();
  return std::optional<std::string>(statement.text(0));
}

Result<std::string> DocumentTable::resolve(const std::string& reference) {
  if (reference.empty()) return Error::invalid_argument(fmt::format("no {} named", what_));
  auto session = db_.lock();
  {
    auto statement = KILN_TRY(session.prepare(
        fmt::format("SELECT record FROM {} WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC", table_)));
    statement.bind(1, reference);
    if (KILN_TRY(statement.step())) return statement.text(0);
  }
  bool hex = reference.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hex) {
    auto statement = KILN_TRY(session.prepare(
        fmt::format("SELECT record FROM {} WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2", table_)));
    statement.bind(1, reference);
    if (KILN_TRY(statement.step())) {
      std::string first = statement.text(0);
      if (KILN_TRY(statement.step())) {
        return Error::invalid_argument(fmt::format("{} id prefix {} is ambiguous", what_, reference));
      }
      return first;
    }
  }
  return Error::not_found(fmt::format("no such {}: {}", what_, reference));
}

Result<std::vector<std::string>> DocumentTable::list() {
  auto session = db_.lock();
  auto statement =
      KILN_TRY(session.prepare(fmt::format("SELECT record FROM {} ORDER BY created_seq", table_)));
  std::vector<std::string> records;
  while (KILN_TRY(statement.step())) records.push_back(statement.text(0));
  return records;
}

}  // namespace kiln::daemon

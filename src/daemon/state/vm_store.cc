#include "daemon/state/vm_store.h"

#include <fmt/format.h>

#include "daemon/state/schema.h"

namespace kiln::daemon {
namespace {

Result<VmRecord> parse_row(const std::string& text) {
  auto json = KILN_TRY_CONTEXT(parse_json(text), "kiln.db: VM record");
  return vm_from_storage_json(json);
}

}  // namespace

Result<std::unique_ptr<VmStore>> VmStore::open(const std::string& root) {
  auto db = KILN_TRY(store::Database::open(root + "/kiln.db", kKilnDbSchema));
  return std::unique_ptr<VmStore>(new VmStore(std::move(db)));  // NOLINT: private constructor
}

Result<void> VmStore::insert(const VmRecord& vm) {
  auto session = db_->lock();
  auto statement =
      KILN_TRY(session.prepare("INSERT INTO vms (id, name, record, created_seq) VALUES (?1, ?2, ?3,"
                               " (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM vms))"));
  statement.bind(1, vm.id).bind(2, vm.name).bind(3, to_storage_json(vm).dump());
  auto done = statement.step();
  if (!done) {
    if (done.error().category() == ErrorCategory::kAlreadyExists) {
      return Error::already_exists(fmt::format("the name \"{}\" is already in use by another VM", vm.name));
    }
    return done.error();
  }
  return ok();
}

Result<void> VmStore::update(const VmRecord& vm) {
  auto session = db_->lock();
  auto statement = KILN_TRY(session.prepare("UPDATE vms SET name = ?2, record = ?3 WHERE id = ?1"));
  statement.bind(1, vm.id).bind(2, vm.name).bind(3, to_storage_json(vm).dump());
  KILN_TRY(statement.step());
  if (statement.changes() == 0) return Error::not_found(fmt::format("no such VM: {}", vm.id));
  return ok();
}

Result<void> VmStore::remove(const std::string& id) {
  auto session = db_->lock();
  auto statement = KILN_TRY(session.prepare("DELETE FROM vms WHERE id = ?1"));
  statement.bind(1, id);
  KILN_TRY(statement.step());
  return ok();
}

Result<std::optional<VmRecord>> VmStore::get(const std::string& id) {
  auto session = db_->lock();
  auto statement = KILN_TRY(session.prepare("SELECT record FROM vms WHERE id = ?1"));
  statement.bind(1, id);
  if (!KILN_TRY(statement.step())) return std::optional<VmRecord>();
  return std::optional<VmRecord>(KILN_TRY(parse_row(statement.text(0))));
}

Result<VmRecord> VmStore::resolve(const std::string& id_or_name) {
  if (id_or_name.empty()) return Error::invalid_argument("no VM named");
  auto session = db_->lock();
  {
    auto statement =
        KILN_TRY(session.prepare("SELECT record FROM vms WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC"));
    statement.bind(1, id_or_name);
    if (KILN_TRY(statement.step())) return parse_row(statement.text(0));
  }
  bool hex = id_or_name.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hex) {
    auto statement =
        KILN_TRY(session.prepare("SELECT record FROM vms WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2"));
    statement.bind(1, id_or_name);
    if (KILN_TRY(statement.step())) {
      std::string first = statement.text(0);
      if (KILN_TRY(statement.step())) {
        return Error::invalid_argument(fmt::format("VM id prefix {} is ambiguous", id_or_name));
      }
      return parse_row(first);
    }
  }
  return Error::not_found(fmt::format("no such VM: {}", id_or_name));
}

Result<std::vector<VmRecord>> VmStore::list() {
  auto session = db_->lock();
  auto statement = KILN_TRY(session.prepare("SELECT record FROM vms ORDER BY created_seq"));
  std::vector<VmRecord> vms;
  while (KILN_TRY(statement.step())) vms.push_back(KILN_TRY(parse_row(statement.text(0))));
  return vms;
}

}  // namespace kiln::daemon

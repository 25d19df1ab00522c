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

VmStore::VmStore(std::unique_ptr<store::Database> db) : db_(std::move(db)), table_(*db_, "vms", "VM") {}

Result<void> VmStore::insert(const VmRecord& vm) {
  return table_.insert(vm.id, vm.name, to_storage_json(vm).dump());
}

Result<void> VmStore::update(const VmRecord& vm) {
  return table_.update(vm.id, vm.name, to_storage_json(vm).dump());
}

Result<void> VmStore::remove(const std::string& id) {
  return table_.remove(id);
}

Result<std::optional<VmRecord>> VmStore::get(const std::string& id) {
  auto text = KILN_TRY(table_.get(id));
  if (!text) return std::optional<VmRecord>();
  return std::optional<VmRecord>(KILN_TRY(parse_row(*text)));
}

Result<VmRecord> VmStore::resolve(const std::string& id_or_name) {
  return parse_row(KILN_TRY(table_.resolve(id_or_name)));
}

Result<std::vector<VmRecord>> VmStore::list() {
  std::vector<VmRecord> vms;
  for (const auto& text : KILN_TRY(table_.list())) vms.push_back(KILN_TRY(parse_row(text)));
  return vms;
}

}  // namespace kiln::daemon

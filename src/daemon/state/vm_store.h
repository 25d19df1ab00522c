// VmStore: VM records in kilnd's state database (kiln.db, schema in schema.cc), which it opens and owns.
// Names are unique (a UNIQUE column), so of many concurrent creates of one name exactly one insert wins. Owns
// the Database; any thread (calls serialize on the database's session lock).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/state/document_table.h"
#include "daemon/state/vm_record.h"
#include "store/database.h"

namespace kiln::daemon {

class VmStore {
 public:
  // Opens (creating or migrating) <root>/kiln.db; kUnsupported when a newer kilnd wrote it.
  static Result<std::unique_ptr<VmStore>> open(const std::string& root);

  // kAlreadyExists when the name or id is taken.
  Result<void> insert(const VmRecord& vm);
  // kNotFound when the VM is gone.
  Result<void> update(const VmRecord& vm);
  Result<void> remove(const std::string& id);
  Result<std::optional<VmRecord>> get(const std::string& id);
  // By exact id, exact name, then unique id prefix (as Docker resolves container names). kNotFound or
  // kInvalidArgument (ambiguous prefix).
  Result<VmRecord> resolve(const std::string& id_or_name);
  Result<std::vector<VmRecord>> list();

  // kiln.db itself, for the other tables in it (containers).
  store::Database& database() { return *db_; }

 private:
  explicit VmStore(std::unique_ptr<store::Database> db);
  std::unique_ptr<store::Database> db_;
  DocumentTable table_;
};

}  // namespace kiln::daemon

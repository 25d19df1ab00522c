// VmStore: VM records in the state database. Names are unique (a UNIQUE column), so of many concurrent
// creates of one name exactly one insert wins. Thread-safe (serialized on the database's lock).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/state/sqlite_db.h"
#include "daemon/state/vm_record.h"

namespace kiln::daemon {

class VmStore {
 public:
  // Opens (creating or migrating) <root>/kiln.db.
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

 private:
  explicit VmStore(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}
  std::unique_ptr<SqliteDb> db_;
};

}  // namespace kiln::daemon

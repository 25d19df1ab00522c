// ContainerStore: container records in kiln.db's containers table, beside the VM records (one database, one
// migration list). Lookups resolve as dockerd's do: exact id, exact name, then a unique id prefix; misses are
// in dockerd's words ("No such container: X"). Any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "daemon/containers/container_record.h"
#include "daemon/state/document_table.h"

namespace kiln::daemon::containers {

class ContainerStore {
 public:
  explicit ContainerStore(store::Database& db) : table_(db, "containers", "container") {}

  // kAlreadyExists in dockerd's words (naming the container that has the name) when the name is taken.
  Result<void> insert(const ContainerRecord& container);
  Result<void> update(const ContainerRecord& container);
  Result<void> remove(const std::string& id);
  Result<std::optional<ContainerRecord>> get(const std::string& id);
  // A leading "/" on a name is accepted, as dockerd accepts it.
  Result<ContainerRecord> resolve(const std::string& reference);
  Result<std::vector<ContainerRecord>> list();

 private:
  Error name_conflict(const std::string& name);
  DocumentTable table_;
};

// dockerd's message for a name another container has.
std::string name_conflict_message(const std::string& name, const std::string& holder_id);

}  // namespace kiln::daemon::containers

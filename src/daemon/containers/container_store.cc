#include "daemon/containers/container_store.h"

#include <fmt/format.h>

namespace kiln::daemon::containers {
namespace {

Result<ContainerRecord> parse_row(const std::string& text) {
  auto json = KILN_TRY_CONTEXT(parse_json(text), "kiln.db: container record");
  return container_from_storage_json(json);
}

}  // namespace

std::string name_conflict_message(const std::string& name, const std::string& holder_id) {
  return fmt::format(
      "Conflict. The container name \"/{}\" is already in use by container \"{}\". You have to remove (or "
      "rename) that container to be able to reuse that name.",
      name, holder_id);
}

Error ContainerStore::name_conflict(const std::string& name) {
  auto holder = resolve(name);
  if (!holder) return holder.error();
  return Error::already_exists(name_conflict_message(name, holder->id));
}

Result<void> ContainerStore::insert(const ContainerRecord& container) {
  auto inserted = table_.insert(container.id, container.name, to_storage_json(container).dump());
  if (!inserted && inserted.error().category() == ErrorCategory::kAlreadyExists)
    return name_conflict(container.name);
  return inserted;
}

Result<void> ContainerStore::update(const ContainerRecord& container) {
  auto updated = table_.update(container.id, container.name, to_storage_json(container).dump());
  if (!updated && updated.error().category() == ErrorCategory::kAlreadyExists)
    return name_conflict(container.name);
  if (!updated && updated.error().category() == ErrorCategory::kNotFound)
    return Error::not_found(fmt::format("No such container: {}", container.id));
  return updated;
}

Result<void> ContainerStore::remove(const std::string& id) {
  return table_.remove(id);
}

Result<std::optional<ContainerRecord>> ContainerStore::get(const std::string& id) {
  auto text = KILN_TRY(table_.get(id));
  if (!text) return std::optional<ContainerRecord>();
  return std::optional<ContainerRecord>(KILN_TRY(parse_row(*text)));
}

Result<ContainerRecord> ContainerStore::resolve(const std::string& reference) {
  std::string name = reference.starts_with('/') ? reference.substr(1) : reference;
  auto text = table_.resolve(name);
  if (!text) {
    if (text.error().category() == ErrorCategory::kNotFound || name.empty())
      return Error::not_found(fmt::format("No such container: {}", reference));
    if (text.error().category() == ErrorCategory::kInvalidArgument)
      return Error::invalid_argument(fmt::format("multiple IDs found with provided prefix: {}", reference));
    return text.error();
  }
  return parse_row(*text);
}

Result<std::vector<ContainerRecord>> ContainerStore::list() {
  std::vector<ContainerRecord> containers;
  for (const auto& text : KILN_TRY(table_.list())) containers.push_back(KILN_TRY(parse_row(text)));
  return containers;
}

}  // namespace kiln::daemon::containers

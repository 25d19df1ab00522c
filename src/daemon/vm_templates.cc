// VmManager's fork templates as operators see them: listed with the running VMs forked from each, built
// ahead of need (`kiln template warm`), removed when nothing uses them.
#include <fmt/format.h>

#include "daemon/vm_manager.h"
#include "daemon/warm_pool.h"
#include "engine/template_pool.h"

namespace kiln::daemon {
namespace {

Error cold_boot_only() {
  return Error::failed_precondition("kilnd boots every VM (--boot=cold): it has no fork templates");
}

}  // namespace

Result<std::vector<TemplateInfo>> VmManager::list_templates() {
  if (config_.templates == nullptr) return cold_boot_only();
  std::vector<TemplateInfo> templates = config_.templates->list();
  for (const auto& vm : KILN_TRY(store_.list())) {
    if (!has_monitor(vm.state) || vm.template_key.empty()) continue;
    for (auto& info : templates) {
      if (info.key == vm.template_key) ++info.in_use;
    }
  }
  if (config_.pool != nullptr) {
    for (auto& info : templates) info.pooled = static_cast<int>(config_.pool->stats(info.key).idle);
  }
  return templates;
}

Result<TemplateInfo> VmManager::warm_template(std::optional<unsigned> cpus,
                                              std::optional<uint64_t> memory_mib) {
  if (config_.templates == nullptr) return cold_boot_only();
  // Shaped exactly as a container's VM of that size: the key is what its start will look up.
  VmRecord shape{.id = std::string(64, '0'), .name = "template"};
  shape.source.kind = RootSource::Kind::kContainer;
  shape.cpus = cpus.value_or(shape.cpus);
  shape.memory_mib = memory_mib.value_or(shape.memory_mib);
  KILN_TRY(validate_resources(shape.cpus, shape.memory_mib));
  engine::VmSpec spec = spec_for(shape);
  engine::VmTemplate made = KILN_TRY(config_.templates->template_for(spec));
  // Warm means ready to start: the pool keeps idle clones of it from now on.
  if (config_.pool != nullptr) config_.pool->want(made.key(), spec);
  for (auto& info : KILN_TRY(list_templates())) {
    if (info.key == made.key()) return info;
  }
  return Error::internal(fmt::format("template {} was built but is not listed", made.key()));
}

Result<void> VmManager::remove_template(const std::string& key_or_prefix) {
  auto templates = KILN_TRY(list_templates());
  const TemplateInfo* found = nullptr;
  for (const auto& info : templates) {
    if (key_or_prefix.empty() || !info.key.starts_with(key_or_prefix)) continue;
    if (found != nullptr)
      return Error::invalid_argument(fmt::format("template key prefix {} is ambiguous", key_or_prefix));
    found = &info;
  }
  if (found == nullptr) return Error::not_found(fmt::format("no template {}", key_or_prefix));
  if (found->in_use > 0) {
    return Error::failed_precondition(fmt::format("template {} is in use by {} running VM{}",
                                                  found->key.substr(0, 12), found->in_use,
                                                  found->in_use == 1 ? "" : "s"));
  }
  if (config_.pool != nullptr) config_.pool->drain(found->key);
  return config_.templates->remove(found->key);
}

}  // namespace kiln::daemon

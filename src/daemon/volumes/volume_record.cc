#include "daemon/volumes/volume_record.h"

namespace kiln::daemon::volumes {

Json to_storage_json(const VolumeRecord& volume) {
  return {{"name", volume.name},
          {"driver", volume.driver},
          {"created_at", volume.created_at},
          {"labels", volume.labels},
          {"options", volume.options},
          {"anonymous", volume.anonymous},
          {"scope", volume.scope},
          {"labels_given", volume.labels_given},
          {"options_given", volume.options_given}};
}

Result<VolumeRecord> volume_from_storage_json(const Json& json) {
  if (!json.is_object() || !json.contains("name") || !json["name"].is_string())
    return Error::internal("kiln.db: a volume record without a name");
  VolumeRecord volume;
  try {
    volume.name = json["name"].get<std::string>();
    volume.driver = json.value("driver", "local");
    volume.created_at = json.value("created_at", "");
    volume.labels = json.value("labels", std::map<std::string, std::string>());
    volume.options = json.value("options", std::map<std::string, std::string>());
    volume.anonymous = json.value("anonymous", false);
    volume.scope = json.value("scope", "local");
    volume.labels_given = json.value("labels_given", false);
    volume.options_given = json.value("options_given", false);
  } catch (const Json::exception& error) {
    return Error::internal(fmt::format("kiln.db: volume {}: {}", volume.name, error.what()));
  }
  return volume;
}

}  // namespace kiln::daemon::volumes

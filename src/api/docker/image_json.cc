#include "api/docker/image_json.h"

#include "common/rfc3339.h"

namespace kiln::api::docker {
namespace {

std::string familiar(const std::string& normalized) {
  auto ref = image::ImageRef::parse(normalized);
  return ref ? ref->familiar() : normalized;
}

Json familiar_list(const std::vector<std::string>& refs) {
  Json list = Json::array();
  for (const std::string& ref : refs) list.push_back(familiar(ref));
  return list;
}

int64_t unix_time(const std::string& rfc3339) {
  auto time = parse_rfc3339(rfc3339);
  return time ? static_cast<int64_t>(*time) : 0;
}

}  // namespace

Json image_summary_json(const image::ImageSummary& image) {
  int64_t created = unix_time(image.record.created);
  return {{"Id", image.record.id.to_string()},
          {"ParentId", ""},
          {"RepoTags", familiar_list(image.tags)},
          {"RepoDigests", familiar_list(image.repo_digests)},
          {"Created", created},
          {"Size", image.record.size},
          {"SharedSize", -1},
          // Older clients (docker 20.10) print VirtualSize.
          {"VirtualSize", image.record.size},
          {"Labels", Json::object()},
          {"Containers", -1}};
}

Json image_inspect_json(const image::ImageDetails& details) {
  const auto& record = details.summary.record;
  const Json& raw = details.config.raw;
  Json layers = Json::array();
  for (const auto& diff_id : details.config.diff_ids) layers.push_back(diff_id.to_string());
  Json config = raw.value("config", Json::object());
  if (config.is_object() && !config.contains("Labels")) config["Labels"] = nullptr;
  return {{"Id", record.id.to_string()},
          {"RepoTags", familiar_list(details.summary.tags)},
          {"RepoDigests", familiar_list(details.summary.repo_digests)},
          {"Parent", ""},
          {"Comment", raw.value("comment", "")},
          {"Created", record.created},
          {"DockerVersion", raw.value("docker_version", "")},
          {"Author", raw.value("author", "")},
          {"Config", config},
          {"Architecture", details.config.architecture},
          {"Variant", raw.value("variant", "")},
          {"Os", details.config.os},
          {"Size", record.size},
          {"VirtualSize", record.size},
          {"GraphDriver",
           {{"Name", "kiln-erofs"},
            {"Data", details.rootfs_path ? Json{{"RootfsImage", *details.rootfs_path}} : Json::object()}}},
          {"RootFS", {{"Type", "layers"}, {"Layers", layers}}},
          {"Metadata", {{"LastTagTime", "0001-01-01T00:00:00Z"}}}};
}

Json image_history_json(const image::ImageDetails& details) {
  const Json& raw = details.config.raw;
  Json history = raw.value("history", Json::array());
  if (!history.is_array()) history = Json::array();
  // Layer sizes follow the manifest's layers, one per history entry that is not empty_layer.
  std::vector<int64_t> layer_sizes;
  for (const auto& layer : details.manifest.layers) layer_sizes.push_back(static_cast<int64_t>(layer.size));
  Json entries = Json::array();
  size_t layer = 0;
  for (const auto& item : history) {
    if (!item.is_object()) continue;
    bool empty = item.value("empty_layer", false);
    int64_t size = 0;
    if (!empty && layer < layer_sizes.size()) size = layer_sizes[layer++];
    entries.push_back({{"Id", "<missing>"},
                       {"Created", unix_time(item.value("created", ""))},
                       {"CreatedBy", item.value("created_by", "")},
                       {"Tags", nullptr},
                       {"Size", size},
                       {"Comment", item.value("comment", "")}});
  }
  if (entries.empty()) {  // an imported image has no history: one entry for its one layer
    entries.push_back({{"Id", "<missing>"},
                       {"Created", unix_time(details.summary.record.created)},
                       {"CreatedBy", ""},
                       {"Tags", nullptr},
                       {"Size", details.summary.record.size},
                       {"Comment", raw.value("comment", "")}});
  }
  Json newest_first = Json::array();
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) newest_first.push_back(*it);
  newest_first[0]["Id"] = details.summary.record.id.to_string();
  newest_first[0]["Tags"] = familiar_list(details.summary.tags);
  return newest_first;
}

std::string image_display_name(std::string_view name) {
  if (name.starts_with("sha256:")) return std::string(name);
  auto ref = image::ImageRef::parse(name);
  return ref ? ref->familiar() : std::string(name);
}

}  // namespace kiln::api::docker

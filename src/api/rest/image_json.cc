#include "api/rest/image_json.h"

namespace kiln::api::rest {
namespace {

std::string familiar(const std::string& normalized) {
  auto ref = image::ImageRef::parse(normalized);
  return ref ? ref->familiar() : normalized;
}

}  // namespace

Json image_summary_json(const image::ImageSummary& image) {
  Json tags = Json::array();
  for (const std::string& tag : image.tags) tags.push_back(familiar(tag));
  Json digests = Json::array();
  for (const std::string& digest : image.repo_digests) digests.push_back(familiar(digest));
  return {{"Id", image.record.id.to_string()},
          {"RepoTags", tags},
          {"RepoDigests", digests},
          {"ManifestDigest", image.record.manifest_digest.to_string()},
          {"Created", image.record.created},
          {"Added", image.record.added_at},
          {"Size", image.record.size}};
}

Json image_details_json(const image::ImageDetails& details) {
  Json json = image_summary_json(details.summary);
  Json layers = Json::array();
  for (const auto& layer : details.manifest.layers) layers.push_back(image::descriptor_to_json(layer));
  json["Manifest"] = {{"mediaType", details.manifest.media_type}, {"layers", layers}};
  Json diff_ids = Json::array();
  for (const auto& diff_id : details.config.diff_ids) diff_ids.push_back(diff_id.to_string());
  json["RootFS"] = {{"Type", "layers"}, {"Layers", diff_ids}, {"ChainID", details.chain_id.to_string()}};
  json["Architecture"] = details.config.architecture;
  json["Os"] = details.config.os;
  json["Config"] = details.config.raw.value("config", Json::object());
  if (details.rootfs_path) json["RootfsImage"] = *details.rootfs_path;
  return json;
}

Json remove_report_json(const image::RemoveReport& report) {
  Json out = Json::array();
  for (const std::string& ref : report.untagged) out.push_back({{"Untagged", familiar(ref)}});
  for (const auto& id : report.deleted) out.push_back({{"Deleted", id.to_string()}});
  return out;
}

Json prune_report_json(const image::PruneReport& report) {
  Json deleted = Json::array();
  for (const auto& id : report.deleted_images) deleted.push_back({{"Deleted", id.to_string()}});
  return {{"ImagesDeleted", deleted},
          {"SpaceReclaimed", report.bytes_freed},
          {"BlobsRemoved", report.blobs_removed},
          {"ArtifactsRemoved", report.artifacts_removed}};
}

}  // namespace kiln::api::rest

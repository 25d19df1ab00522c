#include "image/manifest.h"

namespace kiln::image {
namespace {

Error bad_document(std::string_view what, std::string_view why) {
  return Error::protocol(fmt::format("malformed {}: {}", what, why));
}

}  // namespace

Result<DocumentKind> classify_document(std::string_view content_type, const Json& document) {
  // Registries send "type; charset=..." at times.
  content_type = content_type.substr(0, content_type.find(';'));
  std::string declared;
  if (document.is_object() && document.contains("mediaType") && document["mediaType"].is_string()) {
    declared = document["mediaType"].get<std::string>();
  }
  for (std::string_view type : {std::string_view(declared), content_type}) {
    if (type == media_type::kDockerManifest || type == media_type::kOciManifest)
      return DocumentKind::kManifest;
    if (type == media_type::kDockerManifestList || type == media_type::kOciIndex) return DocumentKind::kIndex;
    if (type == media_type::kDockerManifestV1 ||
        type == "application/vnd.docker.distribution.manifest.v1+json") {
      return Error::unsupported("Docker schema1 manifests are not supported (deprecated since 2017)");
    }
  }
  // OCI allows documents without mediaType: tell them apart by shape.
  if (document.is_object() && document.contains("manifests")) return DocumentKind::kIndex;
  if (document.is_object() && document.contains("layers")) return DocumentKind::kManifest;
  return bad_document("manifest",
                      fmt::format("unknown media type '{}'", declared.empty() ? content_type : declared));
}

Result<Descriptor> parse_descriptor(const Json& json) {
  if (!json.is_object()) return bad_document("descriptor", "not an object");
  Descriptor descriptor{.media_type = KILN_TRY(optional_string(json, "mediaType")).value_or(""),
                        .digest = KILN_TRY(Digest::parse(KILN_TRY(required_string(json, "digest"))))};
  descriptor.size = KILN_TRY(required_int(json, "size"));
  if (descriptor.size < 0) return bad_document("descriptor", "negative size");
  if (json.contains("platform") && json["platform"].is_object()) {
    const Json& p = json["platform"];
    descriptor.platform = Platform{.os = KILN_TRY(optional_string(p, "os")).value_or(""),
                                   .architecture = KILN_TRY(optional_string(p, "architecture")).value_or(""),
                                   .variant = KILN_TRY(optional_string(p, "variant")).value_or("")};
  }
  if (json.contains("annotations") && json["annotations"].is_object()) {
    for (const auto& [key, value] : json["annotations"].items()) {
      if (value.is_string()) descriptor.annotations[key] = value.get<std::string>();
    }
  }
  return descriptor;
}

Result<Manifest> parse_manifest(std::string_view text) {
  Json json = KILN_TRY_CONTEXT(parse_json(text), "manifest");
  if (!json.is_object()) return bad_document("manifest", "not an object");
  if (KILN_TRY(optional_int(json, "schemaVersion")).value_or(0) != 2) {
    return bad_document("manifest", "schemaVersion is not 2");
  }
  Manifest manifest{
      .media_type =
          KILN_TRY(optional_string(json, "mediaType")).value_or(std::string(media_type::kOciManifest)),
      .config = KILN_TRY_CONTEXT(parse_descriptor(json.value("config", Json())), "manifest config")};
  if (!json.contains("layers") || !json["layers"].is_array())
    return bad_document("manifest", "no layers array");
  for (const Json& layer : json["layers"]) {
    manifest.layers.push_back(KILN_TRY_CONTEXT(parse_descriptor(layer), "manifest layer"));
  }
  return manifest;
}

Result<ImageIndex> parse_index(std::string_view text) {
  Json json = KILN_TRY_CONTEXT(parse_json(text), "image index");
  if (!json.is_object() || !json.contains("manifests") || !json["manifests"].is_array()) {
    return bad_document("image index", "no manifests array");
  }
  ImageIndex index{
      .media_type =
          KILN_TRY(optional_string(json, "mediaType")).value_or(std::string(media_type::kOciIndex))};
  for (const Json& entry : json["manifests"]) {
    index.manifests.push_back(KILN_TRY_CONTEXT(parse_descriptor(entry), "image index entry"));
  }
  return index;
}

Result<ImageConfig> parse_config(std::string_view text) {
  Json json = KILN_TRY_CONTEXT(parse_json(text), "image config");
  if (!json.is_object()) return bad_document("image config", "not an object");
  ImageConfig config{.architecture = KILN_TRY(optional_string(json, "architecture")).value_or(""),
                     .os = KILN_TRY(optional_string(json, "os")).value_or(""),
                     .created = KILN_TRY(optional_string(json, "created")).value_or("")};
  const Json& rootfs = json.value("rootfs", Json::object());
  if (!rootfs.is_object() || !rootfs.contains("diff_ids") || !rootfs["diff_ids"].is_array()) {
    return bad_document("image config", "no rootfs.diff_ids");
  }
  for (const Json& id : rootfs["diff_ids"]) {
    if (!id.is_string()) return bad_document("image config", "diff_id is not a string");
    config.diff_ids.push_back(KILN_TRY(Digest::parse(id.get<std::string>())));
  }
  config.raw = std::move(json);
  return config;
}

Result<Compression> layer_compression(std::string_view type) {
  using namespace media_type;
  if (type == kDockerLayer || type == kOciLayer) return Compression::kNone;
  if (type == kDockerLayerGzip || type == kOciLayerGzip) return Compression::kGzip;
  if (type == kOciLayerZstd) return Compression::kZstd;
  if (type == kDockerForeignLayerGzip ||
      type.starts_with("application/vnd.oci.image.layer.nondistributable")) {
    return Error::unsupported(fmt::format("foreign (non-distributable) layers are not supported: {}", type));
  }
  return Error::unsupported(fmt::format("unsupported layer media type '{}'", type));
}

Result<Descriptor> select_platform(const ImageIndex& index, std::string_view architecture) {
  std::vector<const Descriptor*> matches;
  std::string offered;
  for (const Descriptor& entry : index.manifests) {
    if (!entry.platform) continue;
    const Platform& p = *entry.platform;
    offered += fmt::format("{}{}/{}{}{}", offered.empty() ? "" : ", ", p.os, p.architecture,
                           p.variant.empty() ? "" : "/", p.variant);
    if (p.os == "linux" && p.architecture == architecture) matches.push_back(&entry);
  }
  if (matches.empty()) {
    return Error::not_found(fmt::format("no manifest for linux/{} in the image index (it offers: {})",
                                        architecture, offered.empty() ? "nothing" : offered));
  }
  // amd64 has variants v2/v3 on some images; the unqualified one runs everywhere.
  for (const Descriptor* entry : matches) {
    if (entry->platform->variant.empty()) return *entry;
  }
  return *matches.front();
}

Digest chain_id(const std::vector<Digest>& diff_ids) {
  std::string chain;
  for (const Digest& diff_id : diff_ids) {
    chain = chain.empty() ? diff_id.to_string() : Digest::of(chain + " " + diff_id.to_string()).to_string();
  }
  if (chain.empty()) return Digest::of("");
  return *Digest::parse(chain);
}

Json descriptor_to_json(const Descriptor& descriptor) {
  Json json = {{"mediaType", descriptor.media_type},
               {"digest", descriptor.digest.to_string()},
               {"size", descriptor.size}};
  if (!descriptor.annotations.empty()) json["annotations"] = descriptor.annotations;
  if (descriptor.platform) {
    json["platform"] = {{"os", descriptor.platform->os}, {"architecture", descriptor.platform->architecture}};
    if (!descriptor.platform->variant.empty()) json["platform"]["variant"] = descriptor.platform->variant;
  }
  return json;
}

std::string manifest_to_json(const Manifest& manifest) {
  Json layers = Json::array();
  for (const Descriptor& layer : manifest.layers) layers.push_back(descriptor_to_json(layer));
  Json json = {{"schemaVersion", 2},
               {"mediaType", manifest.media_type},
               {"config", descriptor_to_json(manifest.config)},
               {"layers", std::move(layers)}};
  return json.dump();
}

}  // namespace kiln::image

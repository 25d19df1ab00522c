// OCI image-spec and Docker schema2 documents: descriptors, image manifests, indexes (manifest lists) and
// image configs, parsed strictly from untrusted JSON (registries, archives). Value types, no I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "image/digest.h"

namespace kiln::image::media_type {
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifestV1 =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kDockerForeignLayerGzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
}  // namespace kiln::image::media_type

namespace kiln::image {

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
};

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;
};

enum class DocumentKind { kManifest, kIndex };

struct Manifest {
  std::string media_type;  // kDockerManifest or kOciManifest
  Descriptor config;
  std::vector<Descriptor> layers;
};

struct ImageIndex {
  std::string media_type;  // kDockerManifestList or kOciIndex
  std::vector<Descriptor> manifests;
};

struct ImageConfig {
  std::string architecture;
  std::string os;
  std::string created;
  std::vector<Digest> diff_ids;  // rootfs.diff_ids: digests of the uncompressed layer tars, in order
  Json raw;                      // the whole document, for inspect
};

enum class Compression { kNone, kGzip, kZstd };

// Decides whether a registry/archive document is a manifest or an index, from its Content-Type (may be empty)
// and its own mediaType field. Docker schema1 is kUnsupported.
Result<DocumentKind> classify_document(std::string_view content_type, const Json& document);

Result<Descriptor> parse_descriptor(const Json& json);
Result<Manifest> parse_manifest(std::string_view text);
Result<ImageIndex> parse_index(std::string_view text);
Result<ImageConfig> parse_config(std::string_view text);

// Whether a layer media type is one Kiln can unpack, and how it is compressed.
Result<Compression> layer_compression(std::string_view layer_media_type);

// The manifest of an index for linux/<architecture> (variant ignored unless several match); kNotFound
// listing the platforms on offer otherwise.
Result<Descriptor> select_platform(const ImageIndex& index, std::string_view architecture = "amd64");

// OCI image-spec config.md "Layer ChainID": ChainID(L0) = DiffID(L0),
// ChainID(L0..n) = SHA256(ChainID(L0..n-1) + " " + DiffID(Ln)).
Digest chain_id(const std::vector<Digest>& diff_ids);

Json descriptor_to_json(const Descriptor& descriptor);
// Canonical JSON for a manifest Kiln writes itself (import, load of docker archives).
std::string manifest_to_json(const Manifest& manifest);

}  // namespace kiln::image

// ImageStore: Kiln's local OCI image store, the one API over blobs, metadata, registries, archives and root
// filesystem artifacts. Layout under <root>/image: blobs/sha256/<hex> (content addressed), metadata.db
// (SQLite: images, tags, repo digests), rootfs/<chain-id>.erofs (one read-only EROFS per layer chain, shared
// by every container of images with that chain), tmp/ and locks/.
// kilnd owns one instance and serves it as /v1/images (src/api/rest/image_routes.cc); the CLI goes through
// that API. Thread-safe: every method may be called concurrently, and several processes may open the same
// root (file locks + SQLite; tests and benchmarks do).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "image/blob_store.h"
#include "image/digest.h"
#include "image/layer_apply.h"
#include "image/manifest.h"
#include "image/metadata.h"
#include "image/progress.h"
#include "image/reference.h"
#include "image/registry_client.h"

namespace kiln::image {

// Something that happened to an image, as Docker reports image events: action "pull", "push", "tag", "untag",
// "delete", "load", "import" or "save"; `id` is the image ID ("sha256:...") or, for pull and push, the
// familiar reference; `name` the familiar reference involved (may be empty).
struct ImageEvent {
  std::string action;
  std::string id;
  std::string name;
};

struct StoreOptions {
  std::string root = "/var/lib/kiln";  // Kiln's root; the store is <root>/image
  // Registries reached over plain HTTP (host or host:port). Loopback registries always are.
  std::vector<std::string> insecure_registries;
  // Docker CLI config.json whose "auths" supply registry credentials; empty: none. (The CLI passes
  // $DOCKER_CONFIG/config.json or ~/.docker/config.json.)
  std::string docker_config;
  UnpackOptions unpack;  // limits and privileges for layer application
  int max_parallel_downloads = 3;
  std::string architecture = "amd64";  // picked from manifest lists / OCI indexes (os is always linux)
  // Called after each change succeeded, on the thread that made it (kilnd publishes these as events).
  std::function<void(const ImageEvent&)> on_event;
};

struct PullOptions {
  std::optional<RegistryCredentials> credentials;  // overrides the Docker config's
};

struct PushOptions {
  std::optional<RegistryCredentials> credentials;
  uint64_t chunk_size = 0;  // 0: monolithic uploads; otherwise PATCH chunks of this size
};

struct LoadOptions {
  // For OCI layouts whose ref.name annotation is only a tag ("latest"): the repository to tag it in.
  std::optional<std::string> repository;
};

struct ImageSummary {
  ImageRecord record;
  std::vector<std::string> tags;          // normalized "domain/path:tag"
  std::vector<std::string> repo_digests;  // "domain/path@sha256:..."
};

struct ImageDetails {
  ImageSummary summary;
  Manifest manifest;
  ImageConfig config;
  Digest chain_id;
  std::optional<std::string> rootfs_path;  // set when the EROFS artifact is built
};

struct RemoveReport {
  std::vector<std::string> untagged;
  std::vector<Digest> deleted;
};

struct PruneReport {
  std::vector<Digest> deleted_images;
  uint64_t blobs_removed = 0;
  uint64_t artifacts_removed = 0;
  uint64_t bytes_freed = 0;
};

class ImageStore {
 public:
  static Result<std::unique_ptr<ImageStore>> open(StoreOptions options);
  ~ImageStore();

  // Registry v2 pull. Finished layers already in the store are never fetched again, so a killed pull resumes.
  // Returns the image ID.
  Result<Digest> pull(const ImageRef& ref, const PullOptions& options, ProgressListener& progress);
  // Registry v2 push of a local image (by name or ID) to `target`. Returns the manifest digest.
  Result<Digest> push(std::string_view source, const ImageRef& target, const PushOptions& options,
                      ProgressListener& progress);
  // `docker save` archives and OCI image layouts (a directory, or a tar of one; compressed tars too).
  // Returns the IDs of the images loaded.
  Result<std::vector<Digest>> load(const std::string& path, const LoadOptions& options,
                                   ProgressListener& progress);
  // Writes a tar that is both a `docker save` archive and an OCI image layout.
  Result<void> save(const std::vector<std::string>& names, const std::string& output_path);
  // A plain root filesystem tarball (optionally compressed) as a one-layer image.
  Result<Digest> import(const std::string& tarball_path, const std::optional<ImageRef>& tag);
  // `docker commit` (image_commit.cc): a new image of `base`'s layers plus the uncompressed layer tar at
  // `layer_path` (OCI whiteouts), with `config` as the image config's "config" and a history entry.
  struct CommitRequest {
    std::string base;  // the image the container was created from (ID or name)
    std::string layer_path;
    Json config = Json::object();  // Cmd, Entrypoint, Env, WorkingDir, User, Labels, ...
    std::string comment;
    std::string author;
    std::string created_by;  // the history's "created_by": the container's command
    std::optional<ImageRef> tag;
  };
  Result<Digest> commit(const CommitRequest& request);

  // "busybox", "busybox:1.36", "host/a@sha256:...", a full "sha256:..." ID or a unique ID prefix.
  Result<Digest> resolve(std::string_view name);
  Result<std::vector<ImageSummary>> list();
  Result<ImageDetails> inspect(std::string_view name);
  Result<void> tag(std::string_view source, const ImageRef& target);
  // Untags `name`; the image goes when no tag is left. By ID, an image with several tags needs `force`.
  // Blobs and artifacts nothing references any more are deleted.
  Result<RemoveReport> remove(std::string_view name, bool force);
  // Deletes untagged images (all images with `all`), then unreferenced blobs, artifacts and stale temp files.
  Result<PruneReport> prune(bool all);

  // The read-only EROFS root filesystem of an image, built on first use (layers verified against their
  // diff_ids and applied safely) and cached by chain ID.
  Result<std::string> rootfs_image(std::string_view name, ProgressListener& progress);
  // A sparse ext4 file of `size_bytes` for one container's writable layer, with the empty root-owned
  // directories `directories` (e.g. overlayfs's upper and work) made in it already, so the guest does not
  // spend its first start making them. The caller owns the file.
  static Result<void> create_writable_layer(const std::string& path, uint64_t size_bytes,
                                            const std::vector<std::string>& directories = {});

  const std::string& dir() const { return dir_; }

 private:
  struct Registered;
  ImageStore(StoreOptions options, std::string dir, std::unique_ptr<BlobStore> blobs,
             std::unique_ptr<MetadataDb> db);

  // Records an image whose manifest, config and layers are all in the blob store, after building its root
  // filesystem (so a bad layer is never recorded).
  Result<Digest> register_image(const Digest& manifest_digest, const std::vector<ImageRef>& tags,
                                const std::vector<std::string>& repo_digests, ProgressListener& progress);
  // The EROFS image of `manifest`'s layers, built unless already there (one builder per chain).
  Result<std::string> build_rootfs(const Manifest& manifest, const ImageConfig& config,
                                   ProgressListener& progress);
  Result<ImageSummary> summary_of(const ImageRecord& record);
  Result<std::pair<Manifest, ImageConfig>> read_image(const ImageRecord& record);
  // Blobs some image needs: manifests (and indexes of repo digests), configs, layers.
  Result<std::set<Digest>> referenced_blobs();
  // Deletes blobs and artifacts no image references. Caller holds the exclusive store lock.
  Result<PruneReport> collect_garbage();
  void emit(std::string action, std::string id, std::string name = {}) const;
  Result<std::unique_ptr<RegistryClient>> client_for(const std::string& domain,
                                                     std::vector<std::string> scopes,
                                                     const std::optional<RegistryCredentials>& credentials);
  // Downloads one blob unless the store has it; waits for (and reuses) a concurrent download of the same
  // blob.
  Result<void> fetch_blob(RegistryClient& client, const std::string& repository, const Descriptor& blob,
                          ProgressListener& progress);
  Result<void> fetch_layers(RegistryClient& client, const std::string& repository,
                            const std::vector<Descriptor>& layers, ProgressListener& progress);
  Result<FileLock> shared_store_lock();
  Result<FileLock> exclusive_store_lock();
  std::string rootfs_path(const Digest& chain) const;

  StoreOptions options_;
  std::string dir_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<MetadataDb> db_;
};

}  // namespace kiln::image

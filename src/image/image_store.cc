#include "image/image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <set>

#include "common/child_process.h"
#include "common/log.h"
#include "common/temp_dir.h"

namespace kiln::image {

std::string_view to_string(ProgressState state) {
  switch (state) {
    case ProgressState::kWaiting:
      return "Waiting";
    case ProgressState::kDownloading:
      return "Downloading";
    case ProgressState::kVerifying:
      return "Verifying";
    case ProgressState::kDownloaded:
      return "Pull complete";
    case ProgressState::kAlreadyExists:
      return "Already exists";
    case ProgressState::kUploading:
      return "Pushing";
    case ProgressState::kMounted:
      return "Mounted";
    case ProgressState::kPushed:
      return "Pushed";
    case ProgressState::kExtracting:
      return "Extracting";
    case ProgressState::kDone:
      return "Done";
  }
  return "?";
}

std::optional<ProgressState> progress_state_from_string(std::string_view text) {
  for (ProgressState state :
       {ProgressState::kWaiting, ProgressState::kDownloading, ProgressState::kVerifying,
        ProgressState::kDownloaded, ProgressState::kAlreadyExists, ProgressState::kUploading,
        ProgressState::kMounted, ProgressState::kPushed, ProgressState::kExtracting, ProgressState::kDone}) {
    if (to_string(state) == text) return state;
  }
  return std::nullopt;
}

ImageStore::ImageStore(StoreOptions options, std::string dir, std::unique_ptr<BlobStore> blobs,
                       std::unique_ptr<MetadataDb> db)
    : options_(std::move(options)), dir_(std::move(dir)), blobs_(std::move(blobs)), db_(std::move(db)) {}

ImageStore::~ImageStore() = default;

Result<std::unique_ptr<ImageStore>> ImageStore::open(StoreOptions options) {
  if (options.root.empty()) return Error::invalid_argument("image store: empty root directory");
  std::string dir = options.root + "/image";
  KILN_TRY_CONTEXT(make_directories(dir + "/rootfs"), "image store");
  KILN_TRY_CONTEXT(make_directories(dir + "/unpack"), "image store");
  auto blobs = KILN_TRY_CONTEXT(BlobStore::open(dir), "image store");
  auto db = KILN_TRY(MetadataDb::open(dir + "/metadata.db"));
  return std::unique_ptr<ImageStore>(
      new ImageStore(std::move(options), std::move(dir), std::move(blobs), std::move(db)));
}

// Writers (pull, load, import, rootfs builds) hold the store lock shared; garbage collection holds it
// exclusively, so it never deletes a blob between its download and the image row that references it.
Result<FileLock> ImageStore::shared_store_lock() {
  return blobs_->lock_name("store", /*shared=*/true);
}
Result<FileLock> ImageStore::exclusive_store_lock() {
  return blobs_->lock_name("store", /*shared=*/false);
}

std::string ImageStore::rootfs_path(const Digest& chain) const {
  return dir_ + "/rootfs/" + chain.hex() + ".erofs";
}

Result<std::pair<Manifest, ImageConfig>> ImageStore::read_image(const ImageRecord& record) {
  Manifest manifest = KILN_TRY(parse_manifest(KILN_TRY(blobs_->read(record.manifest_digest))));
  ImageConfig config = KILN_TRY(parse_config(KILN_TRY(blobs_->read(manifest.config.digest))));
  return std::make_pair(std::move(manifest), std::move(config));
}

Result<Digest> ImageStore::register_image(const Digest& manifest_digest, const std::vector<ImageRef>& tags,
                                          const std::vector<std::string>& repo_digests,
                                          ProgressListener& progress) {
  Manifest manifest = KILN_TRY(parse_manifest(KILN_TRY(blobs_->read(manifest_digest))));
  std::string config_text = KILN_TRY(blobs_->read(manifest.config.digest));
  ImageConfig config = KILN_TRY(parse_config(config_text));
  if (config.diff_ids.size() != manifest.layers.size()) {
    return Error::protocol(fmt::format("image config lists {} layers (diff_ids), its manifest {}",
                                       config.diff_ids.size(), manifest.layers.size()));
  }
  if (!config.os.empty() && config.os != "linux") {
    return Error::unsupported(fmt::format("image is for {}, Kiln runs linux images", config.os));
  }
  int64_t size = manifest.config.size;
  for (const Descriptor& layer : manifest.layers) {
    KILN_TRY(layer_compression(layer.media_type));
    if (!blobs_->contains(layer.digest))
      return Error::internal(fmt::format("layer {} missing after fetch", layer.digest));
    size += layer.size;
  }
  // Every layer is applied (checked against its diff_id, refused when hostile) and the EROFS root filesystem
  // built before the image is recorded, as dockerd unpacks during a pull: a corrupt or hostile layer fails
  // the pull or load itself, leaves no image behind, and the first VM or container from it unpacks nothing.
  KILN_TRY(build_rootfs(manifest, config, progress));
  Digest id = manifest.config.digest;
  KILN_TRY(db_->put_image(
      {.id = id, .manifest_digest = manifest_digest, .created = config.created, .size = size}));
  for (const ImageRef& tag : tags) KILN_TRY(db_->set_tag(tag.to_string(), id));
  for (const std::string& ref : repo_digests) KILN_TRY(db_->add_repo_digest(ref, id));
  return id;
}

Result<Digest> ImageStore::resolve(std::string_view name) {
  if (name.starts_with("sha256:")) {
    Digest id = KILN_TRY(Digest::parse(name));
    if (KILN_TRY(db_->find_image(id))) return id;
    return Error::not_found(fmt::format("no such image: {}", name));
  }
  auto ref = ImageRef::parse(name);
  if (ref) {
    if (ref->digest()) {
      if (auto id = KILN_TRY(db_->repo_digest_target(ref->with_digest(*ref->digest()).to_string())))
        return *id;
    } else if (auto id = KILN_TRY(db_->tag_target(ref->to_string()))) {
      return *id;
    }
  }
  // Docker's order: a name that is no known reference may be an image ID prefix.
  bool hex = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c));
  });
  if (hex) {
    auto matches = KILN_TRY(db_->find_images_by_prefix(std::string(name)));
    if (matches.size() == 1) return matches.front().id;
    if (matches.size() > 1)
      return Error::invalid_argument(fmt::format("image ID prefix '{}' is ambiguous", name));
  }
  if (!ref) return std::move(ref).error();
  return Error::not_found(fmt::format("no such image: {}", ref->familiar()));
}

Result<ImageSummary> ImageStore::summary_of(const ImageRecord& record) {
  return ImageSummary{.record = record,
                      .tags = KILN_TRY(db_->tags_of(record.id)),
                      .repo_digests = KILN_TRY(db_->repo_digests_of(record.id))};
}

Result<std::vector<ImageSummary>> ImageStore::list() {
  std::vector<ImageSummary> summaries;
  for (const ImageRecord& record : KILN_TRY(db_->list_images()))
    summaries.push_back(KILN_TRY(summary_of(record)));
  return summaries;
}

Result<ImageDetails> ImageStore::inspect(std::string_view name) {
  Digest id = KILN_TRY(resolve(name));
  auto record = KILN_TRY(db_->find_image(id));
  if (!record) return Error::not_found(fmt::format("no such image: {}", name));
  auto [manifest, config] = KILN_TRY(read_image(*record));
  Digest chain = chain_id(config.diff_ids);
  ImageDetails details{.summary = KILN_TRY(summary_of(*record)),
                       .manifest = std::move(manifest),
                       .config = std::move(config),
                       .chain_id = chain};
  std::string path = rootfs_path(chain);
  if (::access(path.c_str(), F_OK) == 0) details.rootfs_path = path;
  return details;
}

void ImageStore::emit(std::string action, std::string id, std::string name) const {
  if (options_.on_event)
    options_.on_event({.action = std::move(action), .id = std::move(id), .name = std::move(name)});
}

namespace {
std::string familiar_name(const std::string& normalized) {
  auto ref = ImageRef::parse(normalized);
  return ref ? ref->familiar() : normalized;
}
}  // namespace

Result<void> ImageStore::tag(std::string_view source, const ImageRef& target) {
  if (target.digest()) return Error::invalid_argument("cannot tag with a digest reference");
  Digest id = KILN_TRY(resolve(source));
  KILN_TRY(db_->set_tag(target.to_string(), id));
  emit("tag", id.to_string(), target.familiar());
  return ok();
}

Result<RemoveReport> ImageStore::remove(std::string_view name, bool force) {
  auto lock = KILN_TRY(exclusive_store_lock());
  Digest id = KILN_TRY(resolve(name));
  RemoveReport report;
  auto ref = ImageRef::parse(name);
  bool by_reference = ref && !name.starts_with("sha256:") &&
                      (ref->digest() ? KILN_TRY(db_->repo_digest_target(ref->to_string())).has_value()
                                     : KILN_TRY(db_->tag_target(ref->to_string())).has_value());
  if (by_reference && !ref->digest()) {
    KILN_TRY(db_->remove_tag(ref->to_string()));
    report.untagged.push_back(ref->to_string());
    auto remaining = KILN_TRY(db_->tags_of(id));
    bool same_repository = std::any_of(remaining.begin(), remaining.end(), [&](const std::string& tag) {
      return tag.starts_with(ref->repository() + ":");
    });
    if (!same_repository) KILN_TRY(db_->remove_repo_digests_of_repository(ref->repository(), id));
    if (!remaining.empty()) {
      emit("untag", id.to_string(), ref->familiar());
      return report;
    }
  } else if (!by_reference) {
    auto tags = KILN_TRY(db_->tags_of(id));
    std::set<std::string> repositories;
    for (const std::string& tag : tags) repositories.insert(tag.substr(0, tag.rfind(':')));
    if (repositories.size() > 1 && !force) {
      return Error::failed_precondition(
          fmt::format("image {} is referenced in {} repositories; remove it by name or use --force",
                      id.short_id(), repositories.size()));
    }
    report.untagged = tags;
  }
  for (const std::string& digest_ref : KILN_TRY(db_->repo_digests_of(id)))
    report.untagged.push_back(digest_ref);
  KILN_TRY(db_->remove_image(id));
  report.deleted.push_back(id);
  for (const std::string& ref : report.untagged) emit("untag", id.to_string(), familiar_name(ref));
  emit("delete", id.to_string());
  KILN_TRY(collect_garbage());
  return report;
}

Result<PruneReport> ImageStore::prune(bool all) {
  auto lock = KILN_TRY(exclusive_store_lock());
  std::vector<Digest> deleted;
  for (const ImageRecord& record : KILN_TRY(db_->list_images())) {
    if (all || KILN_TRY(db_->tags_of(record.id)).empty()) {
      KILN_TRY(db_->remove_image(record.id));
      deleted.push_back(record.id);
      emit("delete", record.id.to_string());
    }
  }
  PruneReport report = KILN_TRY(collect_garbage());
  report.deleted_images = std::move(deleted);
  KILN_TRY(blobs_->remove_stale_temp_files());
  return report;
}

Result<std::set<Digest>> ImageStore::referenced_blobs() {
  std::set<Digest> live;
  for (const ImageRecord& record : KILN_TRY(db_->list_images())) {
    live.insert(record.manifest_digest);
    auto image = KILN_TRY_CONTEXT(read_image(record), fmt::format("image {}", record.id));
    live.insert(image.first.config.digest);
    for (const Descriptor& layer : image.first.layers) live.insert(layer.digest);
    // Manifest lists the image was pulled through (repo digests) stay with it.
    for (const std::string& ref : KILN_TRY(db_->repo_digests_of(record.id))) {
      if (auto digest = Digest::parse(ref.substr(ref.find('@') + 1))) live.insert(*digest);
    }
  }
  return live;
}

Result<PruneReport> ImageStore::collect_garbage() {
  std::set<Digest> live_blobs = KILN_TRY(referenced_blobs());
  std::set<std::string> live_artifacts;
  for (const ImageRecord& record : KILN_TRY(db_->list_images())) {
    auto image = KILN_TRY(read_image(record));
    live_artifacts.insert(chain_id(image.second.diff_ids).hex() + ".erofs");
  }
  PruneReport report;
  for (const Digest& digest : KILN_TRY(blobs_->list())) {
    if (live_blobs.contains(digest)) continue;
    report.bytes_freed += blobs_->size(digest).value_or(0);
    KILN_TRY(blobs_->remove(digest));
    ::unlink(fmt::format("{}/locks/blob-{}", dir_, digest.hex()).c_str());
    ++report.blobs_removed;
  }
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/rootfs", error)) {
    std::string name = entry.path().filename();
    if (live_artifacts.contains(name)) continue;
    report.bytes_freed += entry.is_regular_file() ? entry.file_size() : 0;
    KILN_TRY(remove_tree(entry.path()));
    ++report.artifacts_removed;
  }
  // Unpack directories of builds that were killed midway (no build runs: we hold the store lock).
  for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/unpack", error)) {
    KILN_TRY(remove_tree(entry.path()));
  }
  return report;
}

Result<std::string> ImageStore::rootfs_image(std::string_view name, ProgressListener& progress) {
  auto store_lock = KILN_TRY(shared_store_lock());
  Digest id = KILN_TRY(resolve(name));
  auto record = KILN_TRY(db_->find_image(id));
  if (!record) return Error::not_found(fmt::format("no such image: {}", name));
  auto [manifest, config] = KILN_TRY(read_image(*record));
  return build_rootfs(manifest, config, progress);
}

Result<std::string> ImageStore::build_rootfs(const Manifest& manifest, const ImageConfig& config,
                                             ProgressListener& progress) {
  Digest chain = chain_id(config.diff_ids);
  std::string path = rootfs_path(chain);
  if (::access(path.c_str(), F_OK) == 0) return path;
  // One builder per chain; the others wait and find it built.
  auto build_lock = KILN_TRY(blobs_->lock_name("rootfs-" + chain.hex()));
  if (::access(path.c_str(), F_OK) == 0) return path;

  TempDir unpack = KILN_TRY(TempDir::create("build-", dir_ + "/unpack"));
  std::string tree = unpack.path() + "/rootfs";
  if (::mkdir(tree.c_str(), 0755) != 0) return Error::last_os_error(fmt::format("mkdir {}", tree));
  UniqueFd root_fd(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return Error::last_os_error(fmt::format("open {}", tree));
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const Descriptor& layer = manifest.layers[i];
    progress.on_progress({.id = layer.digest.short_id(),
                          .state = ProgressState::kExtracting,
                          .current = 0,
                          .total = static_cast<uint64_t>(layer.size)});
    UniqueFd blob = KILN_TRY(blobs_->open_blob(layer.digest));
    UnpackOptions unpack_options = options_.unpack;
    unpack_options.expected_diff_id = config.diff_ids[i];
    KILN_TRY_CONTEXT(apply_layer(root_fd.get(), blob.get(), unpack_options),
                     fmt::format("layer {} of {} ({})", i + 1, manifest.layers.size(), layer.digest));
    progress.on_progress({.id = layer.digest.short_id(),
                          .state = ProgressState::kDone,
                          .current = static_cast<uint64_t>(layer.size),
                          .total = static_cast<uint64_t>(layer.size)});
  }
  std::string image = unpack.path() + "/rootfs.erofs";
  progress.on_message(fmt::format("Building EROFS image for chain {}", chain.short_id()));
  KILN_TRY_CONTEXT(run_command_checked({"mkfs.erofs", "--quiet", image, tree}), "mkfs.erofs");
  if (::chmod(image.c_str(), 0444) != 0) return Error::last_os_error(fmt::format("chmod {}", image));
  if (::rename(image.c_str(), path.c_str()) != 0)
    return Error::last_os_error(fmt::format("rename to {}", path));
  KILN_TRY(sync_directory(dir_ + "/rootfs"));
  return path;
}

Result<void> ImageStore::create_writable_layer(const std::string& path, uint64_t size_bytes,
                                               const std::vector<std::string>& directories) {
  if (size_bytes < (uint64_t{8} << 20))
    return Error::invalid_argument("writable layer must be at least 8 MiB");
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return Error::last_os_error(fmt::format("create {}", path));
  // ftruncate leaves the file sparse: blocks are allocated only as the guest writes.
  if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) {
    ::unlink(path.c_str());
    return Error::last_os_error(fmt::format("truncate {}", path));
  }
  fd.reset();
  // lazy_journal_init: the file is new and sparse, so the journal already reads as zeros; zeroing it would
  // allocate its 64 MiB on the host for every container.
  std::vector<std::string> argv = {
      "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"};
  std::optional<TempDir> tree;
  if (!directories.empty()) {
    tree = KILN_TRY(TempDir::create("kiln-layer-tree"));
    for (const std::string& directory : directories) {
      if (directory.empty() || directory.find('/') != std::string::npos || directory == "." ||
          directory == "..")
        return Error::invalid_argument(fmt::format("bad writable layer directory \"{}\"", directory));
      if (::mkdir((tree->path() + "/" + directory).c_str(), 0755) != 0)
        return Error::last_os_error(fmt::format("make {} for the writable layer", directory));
    }
    argv.insert(argv.end(), {"-d", tree->path()});
  }
  argv.push_back(path);
  auto made = run_command_checked(argv);
  if (!made) {
    ::unlink(path.c_str());
    return made.error().with_context("mkfs.ext4");
  }
  return ok();
}

Result<Digest> ImageStore::import(const std::string& tarball_path, const std::optional<ImageRef>& tag) {
  auto lock = KILN_TRY(shared_store_lock());
  UniqueFd input(::open(tarball_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!input) return Error::last_os_error(fmt::format("open {}", tarball_path));
  // Garbage must not become an image (nor a blob): check it is a whole tar before taking it in.
  KILN_TRY_CONTEXT(verify_tar_layer(input.get()), fmt::format("import {}", tarball_path));
  if (::lseek(input.get(), 0, SEEK_SET) != 0)
    return Error::last_os_error(fmt::format("rewind {}", tarball_path));
  Digest layer_digest = KILN_TRY(blobs_->ingest_file(input.get()));
  UniqueFd layer = KILN_TRY(blobs_->open_blob(layer_digest));
  std::string magic(4, '\0');
  ssize_t n = ::pread(layer.get(), magic.data(), magic.size(), 0);
  magic.resize(n > 0 ? static_cast<size_t>(n) : 0);
  Digest diff_id = KILN_TRY_CONTEXT(compute_diff_id(layer.get()), fmt::format("import {}", tarball_path));
  std::string_view layer_type = media_type::kDockerLayer;
  std::string_view manifest_type = media_type::kDockerManifest;
  std::string_view config_type = media_type::kDockerConfig;
  if (magic.starts_with("\x1f\x8b")) {
    layer_type = media_type::kDockerLayerGzip;
  } else if (magic.starts_with("\x28\xb5\x2f\xfd")) {
    layer_type = media_type::kOciLayerZstd;
    manifest_type = media_type::kOciManifest;
    config_type = media_type::kOciConfig;
  } else if (diff_id != layer_digest) {
    return Error::invalid_argument(
        fmt::format("{}: unsupported compression (gzip, zstd or none)", tarball_path));
  }
  char created[32];
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  (void)std::strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", ::gmtime_r(&now, &utc));
  Json config = {{"architecture", options_.architecture},
                 {"os", "linux"},
                 {"created", created},
                 {"config", Json::object()},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id.to_string()}}}},
                 {"history", {{{"created", created}, {"created_by", "kiln image import"}}}}};
  std::string config_text = config.dump();
  Digest config_digest = KILN_TRY(blobs_->write(config_text));
  Manifest manifest{.media_type = std::string(manifest_type),
                    .config = {.media_type = std::string(config_type),
                               .digest = config_digest,
                               .size = static_cast<int64_t>(config_text.size())},
                    .layers = {{.media_type = std::string(layer_type),
                                .digest = layer_digest,
                                .size = static_cast<int64_t>(KILN_TRY(blobs_->size(layer_digest)))}}};
  Digest manifest_digest = KILN_TRY(blobs_->write(manifest_to_json(manifest)));
  std::vector<ImageRef> tags;
  if (tag) tags.push_back(*tag);
  NullProgress quiet;
  Digest id = KILN_TRY(register_image(manifest_digest, tags, {}, quiet));
  emit("import", id.to_string(), tag ? tag->familiar() : std::string());
  return id;
}

}  // namespace kiln::image

// ImageStore::load and ImageStore::save: `docker save` archives and OCI image layouts (directories or tars).
// Archives are untrusted: files are streamed into the blob store and addressed by the digest computed on the
// way in; a path named in manifest.json or index.json is only a key into that map, never a file opened on
// the host. Directory layouts are read through openat2(RESOLVE_IN_ROOT), so they cannot point outside.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>
#include <set>

#include "common/clean_path.h"
#include "image/image_store.h"

namespace kiln::image {
namespace {

constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
constexpr std::string_view kContainerdNameAnnotation = "io.containerd.image.name";
constexpr size_t kMaxAliasHops = 16;

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};

// "./a//b/../c" -> "a/c" lexically; ".." above the top is dropped (it is only a map key).
std::string normalize_archive_path(std::string_view path) {
  return clean_absolute_path(path).substr(1);
}

// The files of an image archive, reachable as blobs.
class ArchiveFiles {
 public:
  virtual ~ArchiveFiles() = default;
  virtual bool has(const std::string& path) = 0;
  // The blob holding `path`'s content; with `expected`, a mismatch is an error.
  virtual Result<Digest> blob(const std::string& path, const std::optional<Digest>& expected) = 0;
  virtual Result<std::string> read_small(const std::string& path) = 0;
  // Blobs this archive added to the store; those no image ends up using are deleted after the load.
  const std::set<Digest>& added() const { return added_; }

 protected:
  std::set<Digest> added_;
};

// A tar (optionally compressed), read once: every regular file goes into the blob store on the way.
class TarFiles final : public ArchiveFiles {
 public:
  static Result<std::unique_ptr<TarFiles>> read(const std::string& path, const BlobStore& blobs) {
    auto files = std::unique_ptr<TarFiles>(new TarFiles(blobs));
    std::unique_ptr<archive, ArchiveReadFree> a(archive_read_new());
    archive_read_support_filter_gzip(a.get());
    archive_read_support_filter_zstd(a.get());
    archive_read_support_filter_xz(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
      return Error::invalid_argument(fmt::format("{}: {}", path, archive_error_string(a.get())));
    }
    std::string buffer(1 << 17, '\0');
    while (true) {
      archive_entry* entry = nullptr;
      int status = archive_read_next_header(a.get(), &entry);
      if (status == ARCHIVE_EOF) break;
      if (status < ARCHIVE_WARN)
        return Error::protocol(fmt::format("{}: {}", path, archive_error_string(a.get())));
      std::string name =
          normalize_archive_path(archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "");
      if (name.empty()) continue;
      if (const char* target = archive_entry_hardlink(entry)) {
        files->aliases_[name] = normalize_archive_path(target);
      } else if (archive_entry_filetype(entry) == AE_IFLNK) {
        std::string_view link = archive_entry_symlink(entry) ? archive_entry_symlink(entry) : "";
        std::string dir = name.find('/') == std::string::npos ? "" : name.substr(0, name.rfind('/') + 1);
        files->aliases_[name] =
            normalize_archive_path(link.starts_with('/') ? std::string(link) : dir + std::string(link));
      } else if (archive_entry_filetype(entry) == AE_IFREG) {
        BlobWriter writer = KILN_TRY(blobs.begin_write());
        while (true) {
          la_ssize_t n = archive_read_data(a.get(), buffer.data(), buffer.size());
          if (n < 0)
            return Error::protocol(fmt::format("{}: {}: {}", path, name, archive_error_string(a.get())));
          if (n == 0) break;
          KILN_TRY(writer.write(std::string_view(buffer.data(), static_cast<size_t>(n))));
        }
        Digest digest = KILN_TRY(writer.commit());
        files->added_.insert(digest);
        files->files_.insert_or_assign(name, digest);
      }
    }
    return files;
  }

  bool has(const std::string& path) override { return find(path) != nullptr; }

  Result<Digest> blob(const std::string& path, const std::optional<Digest>& expected) override {
    const Digest* digest = find(path);
    if (!digest) return Error::protocol(fmt::format("archive has no file '{}'", path));
    if (expected && *digest != *expected) {
      return Error::protocol(
          fmt::format("archive file '{}' hashes to {}, expected {}", path, *digest, *expected));
    }
    return *digest;
  }

  Result<std::string> read_small(const std::string& path) override {
    return blobs_.read(KILN_TRY(blob(path, std::nullopt)), size_t{16} << 20);
  }

 private:
  explicit TarFiles(const BlobStore& blobs) : blobs_(blobs) {}

  const Digest* find(std::string path) {
    path = normalize_archive_path(path);
    for (size_t hop = 0; hop < kMaxAliasHops; ++hop) {
      if (auto it = files_.find(path); it != files_.end()) return &it->second;
      auto alias = aliases_.find(path);
      if (alias == aliases_.end()) return nullptr;
      path = alias->second;
    }
    return nullptr;
  }

  const BlobStore& blobs_;
  std::map<std::string, Digest> files_;
  std::map<std::string, std::string> aliases_;
};

// A directory layout, read on demand and confined to the directory.
class DirectoryFiles final : public ArchiveFiles {
 public:
  static Result<std::unique_ptr<DirectoryFiles>> open(const std::string& path, const BlobStore& blobs) {
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return Error::last_os_error(fmt::format("open {}", path));
    return std::unique_ptr<DirectoryFiles>(new DirectoryFiles(std::move(dir), blobs));
  }

  bool has(const std::string& path) override { return open_file(path).has_value(); }

  Result<Digest> blob(const std::string& path, const std::optional<Digest>& expected) override {
    if (expected && blobs_.contains(*expected)) return *expected;
    UniqueFd fd = KILN_TRY(open_file(path));
    Digest digest =
        KILN_TRY_CONTEXT(blobs_.ingest_file(fd.get(), expected), fmt::format("layout file '{}'", path));
    added_.insert(digest);
    return digest;
  }

  Result<std::string> read_small(const std::string& path) override {
    UniqueFd fd = KILN_TRY(open_file(path));
    return read_to_end(fd.get(), size_t{16} << 20);
  }

 private:
  DirectoryFiles(UniqueFd dir, const BlobStore& blobs) : dir_(std::move(dir)), blobs_(blobs) {}

  Result<UniqueFd> open_file(const std::string& path) {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, dir_.get(), path.c_str(), &how, sizeof how);
    if (fd < 0) return Error::last_os_error(fmt::format("open layout file '{}'", path));
    return UniqueFd(static_cast<int>(fd));
  }

  UniqueFd dir_;
  const BlobStore& blobs_;
};

// What `docker load` prints: one "Loaded image: NAME" per tag, or the ID for an untagged image.
void report_loaded(ProgressListener& progress, const Digest& id, const std::vector<ImageRef>& tags) {
  if (tags.empty()) progress.on_message(fmt::format("Loaded image ID: {}", id));
  for (const ImageRef& tag : tags) progress.on_message(fmt::format("Loaded image: {}", tag.familiar()));
}

std::string blob_path(const Digest& digest) {
  return "blobs/sha256/" + digest.hex();
}

// Docker schema2 -> OCI media types; both specs describe the same bytes (image-spec media-types.md
// "Compatibility Matrix").
Manifest to_oci_manifest(Manifest manifest) {
  manifest.media_type = media_type::kOciManifest;
  manifest.config.media_type = media_type::kOciConfig;
  for (Descriptor& layer : manifest.layers) {
    if (layer.media_type == media_type::kDockerLayer) layer.media_type = media_type::kOciLayer;
    if (layer.media_type == media_type::kDockerLayerGzip) layer.media_type = media_type::kOciLayerGzip;
  }
  return manifest;
}

// Media type of a layer blob from its first bytes (docker save does not record one).
Result<std::string_view> sniff_layer_type(const BlobStore& blobs, const Digest& digest) {
  UniqueFd fd = KILN_TRY(blobs.open_blob(digest));
  char magic[4] = {};
  ssize_t n = ::pread(fd.get(), magic, sizeof magic, 0);
  std::string_view head(magic, n > 0 ? static_cast<size_t>(n) : 0);
  if (head.starts_with("\x1f\x8b")) return media_type::kDockerLayerGzip;
  if (head.starts_with("\x28\xb5\x2f\xfd")) return media_type::kOciLayerZstd;
  return media_type::kDockerLayer;
}

}  // namespace

Result<std::vector<Digest>> ImageStore::load(const std::string& path, const LoadOptions& options,
                                             ProgressListener& progress) {
  auto lock = KILN_TRY(shared_store_lock());
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error::last_os_error(fmt::format("load {}", path));
  std::unique_ptr<ArchiveFiles> files;
  if (S_ISDIR(st.st_mode)) {
    files = KILN_TRY(DirectoryFiles::open(path, *blobs_));
  } else {
    files = KILN_TRY(TarFiles::read(path, *blobs_));
  }
  std::vector<Digest> loaded;

  if (files->has("manifest.json")) {
    Json entries =
        KILN_TRY_CONTEXT(parse_json(KILN_TRY(files->read_small("manifest.json"))), "manifest.json");
    if (!entries.is_array()) return Error::protocol("manifest.json is not an array");
    for (const Json& entry : entries) {
      if (!entry.is_object()) return Error::protocol("manifest.json entry is not an object");
      Digest config_digest = KILN_TRY(files->blob(KILN_TRY(required_string(entry, "Config")), std::nullopt));
      std::string config_text = KILN_TRY(blobs_->read(config_digest));
      ImageConfig config = KILN_TRY(parse_config(config_text));
      const Json& layers = entry.value("Layers", Json::array());
      if (!layers.is_array() || layers.size() != config.diff_ids.size()) {
        return Error::protocol("manifest.json Layers do not match the config's diff_ids");
      }
      Manifest manifest{.media_type = std::string(media_type::kDockerManifest),
                        .config = {.media_type = std::string(media_type::kDockerConfig),
                                   .digest = config_digest,
                                   .size = static_cast<int64_t>(config_text.size())}};
      for (size_t i = 0; i < layers.size(); ++i) {
        if (!layers[i].is_string()) return Error::protocol("manifest.json layer is not a string");
        Digest digest = KILN_TRY(files->blob(layers[i].get<std::string>(), std::nullopt));
        std::string_view type = KILN_TRY(sniff_layer_type(*blobs_, digest));
        if (type == media_type::kDockerLayer && digest != config.diff_ids[i]) {
          return Error::protocol(fmt::format("layer '{}' hashes to {}, the config says {}",
                                             layers[i].get<std::string>(), digest, config.diff_ids[i]));
        }
        if (type == media_type::kOciLayerZstd) {
          manifest.media_type = media_type::kOciManifest;
          manifest.config.media_type = media_type::kOciConfig;
        }
        manifest.layers.push_back({.media_type = std::string(type),
                                   .digest = digest,
                                   .size = static_cast<int64_t>(KILN_TRY(blobs_->size(digest)))});
      }
      if (manifest.media_type == media_type::kOciManifest) {
        for (Descriptor& layer : manifest.layers) {
          if (layer.media_type == media_type::kDockerLayer) layer.media_type = media_type::kOciLayer;
          if (layer.media_type == media_type::kDockerLayerGzip) layer.media_type = media_type::kOciLayerGzip;
        }
      }
      Digest manifest_digest = KILN_TRY(blobs_->write(manifest_to_json(manifest)));
      std::vector<ImageRef> tags;
      for (const Json& tag : entry.value("RepoTags", Json::array())) {
        if (tag.is_string()) tags.push_back(KILN_TRY(ImageRef::parse(tag.get<std::string>())));
      }
      Digest id = KILN_TRY(register_image(manifest_digest, tags, {}, progress));
      report_loaded(progress, id, tags);
      emit("load", id.to_string(), tags.empty() ? std::string() : tags.front().familiar());
      loaded.push_back(id);
    }
  } else if (files->has("index.json")) {
    Json layout = KILN_TRY_CONTEXT(parse_json(KILN_TRY(files->read_small("oci-layout"))), "oci-layout");
    if (!layout.is_object() || layout.value("imageLayoutVersion", "") != "1.0.0") {
      return Error::unsupported("unsupported OCI layout version (expected imageLayoutVersion 1.0.0)");
    }
    ImageIndex index = KILN_TRY(parse_index(KILN_TRY(files->read_small("index.json"))));
    for (const Descriptor& top : index.manifests) {
      std::optional<ImageRef> tag;
      auto name = top.annotations.find(std::string(kContainerdNameAnnotation));
      if (name == top.annotations.end()) name = top.annotations.find(std::string(kRefNameAnnotation));
      if (name != top.annotations.end()) {
        const std::string& value = name->second;
        if (value.find_first_of("/:@") != std::string::npos) {
          tag = KILN_TRY(ImageRef::parse(value));
        } else if (options.repository) {
          tag = KILN_TRY(ImageRef::parse(*options.repository + ":" + value));
        }
      }
      Descriptor descriptor = top;
      for (int depth = 0;; ++depth) {
        if (depth > 4) return Error::protocol("OCI layout: indexes nested too deeply");
        Digest digest = KILN_TRY(files->blob(blob_path(descriptor.digest), descriptor.digest));
        std::string text = KILN_TRY(blobs_->read(digest));
        Json document = KILN_TRY(parse_json(text));
        if (KILN_TRY(classify_document(descriptor.media_type, document)) == DocumentKind::kManifest) break;
        descriptor = KILN_TRY(select_platform(KILN_TRY(parse_index(text)), options_.architecture));
      }
      Manifest manifest = KILN_TRY(parse_manifest(KILN_TRY(blobs_->read(descriptor.digest))));
      KILN_TRY(files->blob(blob_path(manifest.config.digest), manifest.config.digest));
      for (const Descriptor& layer : manifest.layers) {
        progress.on_progress({.id = layer.digest.short_id(),
                              .state = ProgressState::kDownloading,
                              .total = static_cast<uint64_t>(layer.size)});
        KILN_TRY(files->blob(blob_path(layer.digest), layer.digest));
        progress.on_progress({.id = layer.digest.short_id(),
                              .state = ProgressState::kDownloaded,
                              .current = static_cast<uint64_t>(layer.size),
                              .total = static_cast<uint64_t>(layer.size)});
      }
      std::vector<ImageRef> tags;
      if (tag) tags.push_back(*tag);
      Digest id = KILN_TRY(register_image(descriptor.digest, tags, {}, progress));
      report_loaded(progress, id, tags);
      emit("load", id.to_string(), tags.empty() ? std::string() : tags.front().familiar());
      loaded.push_back(id);
    }
  } else {
    return Error::invalid_argument(fmt::format(
        "{}: neither a docker save archive (manifest.json) nor an OCI layout (index.json)", path));
  }
  // Bookkeeping files of the archive (legacy json, VERSION, ...) went through the store too.
  std::set<Digest> live = KILN_TRY(referenced_blobs());
  for (const Digest& digest : files->added()) {
    if (!live.contains(digest)) (void)blobs_->remove(digest);
  }
  return loaded;
}

namespace {

class TarWriter {
 public:
  static Result<TarWriter> create(const std::string& path) {
    TarWriter writer(archive_write_new());
    archive_write_set_format_pax_restricted(writer.archive_.get());
    if (archive_write_open_filename(writer.archive_.get(), path.c_str()) != ARCHIVE_OK) {
      return Error::invalid_argument(
          fmt::format("{}: {}", path, archive_error_string(writer.archive_.get())));
    }
    return writer;
  }

  Result<void> add_directory(const std::string& name) { return add_header(name, AE_IFDIR, 0755, 0); }

  Result<void> add_bytes(const std::string& name, std::string_view data) {
    KILN_TRY(add_header(name, AE_IFREG, 0644, data.size()));
    if (!data.empty() && archive_write_data(archive_.get(), data.data(), data.size()) < 0) return error(name);
    return ok();
  }

  Result<void> add_file(const std::string& name, int fd, uint64_t size) {
    KILN_TRY(add_header(name, AE_IFREG, 0644, size));
    std::string buffer(1 << 17, '\0');
    while (true) {
      ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::last_os_error(fmt::format("read blob for {}", name));
      if (n == 0) break;
      if (archive_write_data(archive_.get(), buffer.data(), static_cast<size_t>(n)) < 0) return error(name);
    }
    return ok();
  }

  Result<void> close() {
    if (archive_write_close(archive_.get()) != ARCHIVE_OK) return error("close");
    return ok();
  }

 private:
  explicit TarWriter(archive* a) : archive_(a) {}
  Result<void> add_header(const std::string& name, mode_t type, int mode, uint64_t size) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                        archive_entry_free);
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_filetype(entry.get(), type);
    archive_entry_set_perm(entry.get(), mode);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    if (archive_write_header(archive_.get(), entry.get()) != ARCHIVE_OK) return error(name);
    return ok();
  }
  Error error(std::string_view what) {
    return Error(ErrorCategory::kIo,
                 fmt::format("write archive: {}: {}", what, archive_error_string(archive_.get())));
  }
  std::unique_ptr<archive, ArchiveWriteFree> archive_;
};

}  // namespace

Result<void> ImageStore::save(const std::vector<std::string>& names, const std::string& output_path) {
  if (names.empty()) return Error::invalid_argument("save: no images named");
  struct Saved {
    Digest manifest_digest;
    Manifest manifest;
    std::vector<ImageRef> tags;
  };
  std::vector<Saved> images;
  for (const std::string& name : names) {
    Digest id = KILN_TRY(resolve(name));
    auto record = KILN_TRY(db_->find_image(id));
    if (!record) return Error::not_found(fmt::format("no such image: {}", name));
    Saved saved{.manifest_digest = record->manifest_digest, .manifest = KILN_TRY(read_image(*record)).first};
    auto ref = ImageRef::parse(name);
    if (ref && !ref->digest() && KILN_TRY(db_->tag_target(ref->to_string()))) {
      saved.tags.push_back(*ref);
    } else {
      for (const std::string& tag : KILN_TRY(db_->tags_of(id)))
        saved.tags.push_back(KILN_TRY(ImageRef::parse(tag)));
    }
    images.push_back(std::move(saved));
  }

  std::string temp_path = output_path + ".tmp";
  TarWriter tar = KILN_TRY(TarWriter::create(temp_path));
  KILN_TRY(tar.add_bytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  KILN_TRY(tar.add_directory("blobs"));
  KILN_TRY(tar.add_directory("blobs/sha256"));
  std::set<Digest> written;
  Json index_manifests = Json::array();
  Json docker_manifest = Json::array();
  for (const Saved& image : images) {
    std::vector<Digest> blobs = {image.manifest_digest, image.manifest.config.digest};
    for (const Descriptor& layer : image.manifest.layers) blobs.push_back(layer.digest);
    for (const Digest& digest : blobs) {
      if (!written.insert(digest).second) continue;
      UniqueFd fd = KILN_TRY(blobs_->open_blob(digest));
      KILN_TRY(tar.add_file(blob_path(digest), fd.get(), KILN_TRY(blobs_->size(digest))));
    }
    Json repo_tags = Json::array();
    Json layers = Json::array();
    for (const Descriptor& layer : image.manifest.layers) layers.push_back(blob_path(layer.digest));
    Descriptor manifest_descriptor{
        .media_type = image.manifest.media_type,
        .digest = image.manifest_digest,
        .size = static_cast<int64_t>(KILN_TRY(blobs_->size(image.manifest_digest)))};
    if (image.manifest.media_type != media_type::kOciManifest) {
      // OCI layout readers (skopeo, umoci) skip Docker-typed manifests: index an OCI rendering of the same
      // image. Same config and layer blobs, so the image ID is unchanged; only the manifest digest differs.
      std::string oci = manifest_to_json(to_oci_manifest(image.manifest));
      manifest_descriptor = {.media_type = std::string(media_type::kOciManifest),
                             .digest = Digest::of(oci),
                             .size = static_cast<int64_t>(oci.size())};
      if (written.insert(manifest_descriptor.digest).second) {
        KILN_TRY(tar.add_bytes(blob_path(manifest_descriptor.digest), oci));
      }
    }
    if (image.tags.empty()) index_manifests.push_back(descriptor_to_json(manifest_descriptor));
    for (const ImageRef& tag : image.tags) {
      repo_tags.push_back(tag.familiar());
      Descriptor named = manifest_descriptor;
      named.annotations[std::string(kContainerdNameAnnotation)] = tag.to_string();
      named.annotations[std::string(kRefNameAnnotation)] = *tag.tag();
      index_manifests.push_back(descriptor_to_json(named));
    }
    docker_manifest.push_back(
        {{"Config", blob_path(image.manifest.config.digest)}, {"RepoTags", repo_tags}, {"Layers", layers}});
  }
  Json index = {{"schemaVersion", 2}, {"mediaType", media_type::kOciIndex}, {"manifests", index_manifests}};
  KILN_TRY(tar.add_bytes("index.json", index.dump()));
  KILN_TRY(tar.add_bytes("manifest.json", docker_manifest.dump()));
  KILN_TRY(tar.close());
  if (::rename(temp_path.c_str(), output_path.c_str()) != 0) {
    return Error::last_os_error(fmt::format("rename {} -> {}", temp_path, output_path));
  }
  for (const std::string& name : names) emit("save", KILN_TRY(resolve(name)).to_string(), name);
  return ok();
}

}  // namespace kiln::image

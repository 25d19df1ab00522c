// ImageStore::pull and ImageStore::push: the registry side of the store. Every manifest and blob fetched is
// verified against the digest that names it before anything refers to it.
#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "image/image_store.h"

namespace kiln::image {

Result<std::unique_ptr<RegistryClient>> ImageStore::client_for(
    const std::string& domain, std::vector<std::string> scopes,
    const std::optional<RegistryCredentials>& credentials) {
  const auto& insecure = options_.insecure_registries;
  RegistryOptions registry{
      .plain_http = is_loopback_registry(domain) ||
                    std::find(insecure.begin(), insecure.end(), domain) != insecure.end(),
      .credentials = credentials,
      .scopes = std::move(scopes)};
  if (!registry.credentials && !options_.docker_config.empty()) {
    registry.credentials = KILN_TRY(credentials_from_docker_config(options_.docker_config, domain));
  }
  return RegistryClient::create(domain, std::move(registry));
}

Result<void> ImageStore::fetch_blob(RegistryClient& client, const std::string& repository,
                                    const Descriptor& blob, ProgressListener& progress) {
  std::string id = blob.digest.short_id();
  auto total = static_cast<uint64_t>(blob.size);
  auto already = [&] {
    progress.on_progress(
        {.id = id, .state = ProgressState::kAlreadyExists, .current = total, .total = total});
  };
  if (blobs_->contains(blob.digest)) {
    already();
    return ok();
  }
  auto lock = KILN_TRY(blobs_->lock(blob.digest));
  if (blobs_->contains(blob.digest)) {  // another pull fetched it while we waited
    already();
    return ok();
  }
  constexpr int kAttempts = 4;
  auto delay = std::chrono::milliseconds(500);
  for (int attempt = 1;; ++attempt) {
    // The declared size caps what the registry may send; the digest is checked at commit.
    BlobWriter writer = KILN_TRY(blobs_->begin_write(blob.digest, total));
    std::function<Result<void>(std::string_view)> sink = [&](std::string_view chunk) -> Result<void> {
      if (progress.cancelled()) return Error::cancelled("the pull was cancelled");
      return writer.write(chunk);
    };
    std::function<void(uint64_t)> on_bytes = [&](uint64_t received) {
      progress.on_progress(
          {.id = id, .state = ProgressState::kDownloading, .current = received, .total = total});
    };
    auto fetched = client.get_blob(repository, blob.digest, sink, on_bytes);
    if (fetched) {
      progress.on_progress({.id = id, .state = ProgressState::kVerifying, .current = total, .total = total});
      KILN_TRY_CONTEXT(writer.commit(), fmt::format("blob {}", blob.digest));
      progress.on_progress({.id = id, .state = ProgressState::kDownloaded, .current = total, .total = total});
      return ok();
    }
    if (fetched.error().category() != ErrorCategory::kUnavailable || attempt == kAttempts) {
      return fetched.error().with_context(fmt::format("download {}", blob.digest));
    }
    log::info("blob download failed; retrying",
              {{"digest", blob.digest.to_string()}, {"error", fetched.error().message()}});
    std::this_thread::sleep_for(delay);  // backoff, not synchronization
    delay *= 2;
  }
}

Result<void> ImageStore::fetch_layers(RegistryClient& client, const std::string& repository,
                                      const std::vector<Descriptor>& layers, ProgressListener& progress) {
  for (const Descriptor& layer : layers) {
    KILN_TRY(layer_compression(layer.media_type));
    progress.on_progress({.id = layer.digest.short_id(),
                          .state = ProgressState::kWaiting,
                          .total = static_cast<uint64_t>(layer.size)});
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::optional<Error> first_error;
  auto worker = [&] {
    for (size_t i = next++; i < layers.size() && !failed; i = next++) {
      auto fetched = progress.cancelled() ? Result<void>(Error::cancelled("the pull was cancelled"))
                                          : fetch_blob(client, repository, layers[i], progress);
      if (!fetched) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::move(fetched).error();
        failed = true;
      }
    }
  };
  size_t count = std::clamp<size_t>(static_cast<size_t>(std::max(1, options_.max_parallel_downloads)), 1,
                                    std::max<size_t>(layers.size(), 1));
  std::vector<std::thread> threads;
  for (size_t i = 1; i < count; ++i) threads.emplace_back(worker);
  worker();
  for (std::thread& thread : threads) thread.join();
  if (first_error) return *first_error;
  return ok();
}

Result<Digest> ImageStore::pull(const ImageRef& ref, const PullOptions& options, ProgressListener& progress) {
  auto lock = KILN_TRY(shared_store_lock());
  auto client = KILN_TRY(
      client_for(ref.domain(), {fmt::format("repository:{}:pull", ref.path())}, options.credentials));
  std::string reference = ref.digest() ? ref.digest()->to_string() : *ref.tag();
  FetchedManifest top = KILN_TRY(client->get_manifest(ref.path(), reference));
  Digest top_digest = Digest::of(top.body);
  if (ref.digest() && top_digest != *ref.digest()) {
    return Error::protocol(
        fmt::format("registry sent a manifest hashing to {} for {}", top_digest, *ref.digest()));
  }
  Json document = KILN_TRY_CONTEXT(parse_json(top.body), "manifest");
  Digest manifest_digest = top_digest;
  std::string manifest_body = std::move(top.body);
  if (KILN_TRY(classify_document(top.content_type, document)) == DocumentKind::kIndex) {
    KILN_TRY(blobs_->write(manifest_body, top_digest));
    Descriptor chosen =
        KILN_TRY(select_platform(KILN_TRY(parse_index(manifest_body)), options_.architecture));
    FetchedManifest platform = KILN_TRY(client->get_manifest(ref.path(), chosen.digest.to_string()));
    if (Digest::of(platform.body) != chosen.digest) {
      return Error::protocol(fmt::format("registry sent a manifest hashing to {} for {}",
                                         Digest::of(platform.body), chosen.digest));
    }
    Json platform_document = KILN_TRY_CONTEXT(parse_json(platform.body), "manifest");
    if (KILN_TRY(classify_document(platform.content_type, platform_document)) != DocumentKind::kManifest) {
      return Error::protocol("image index entry is not an image manifest");
    }
    manifest_digest = chosen.digest;
    manifest_body = std::move(platform.body);
  }
  Manifest manifest = KILN_TRY(parse_manifest(manifest_body));
  // Only now, as dockerd: a reference the registry does not know fails before any progress is shown.
  progress.on_message(fmt::format("{}: Pulling from {}", reference, ref.path()));
  NullProgress quiet;  // like docker, no progress line for the small config blob
  KILN_TRY(fetch_blob(*client, ref.path(), manifest.config, quiet));
  KILN_TRY(parse_config(KILN_TRY(blobs_->read(manifest.config.digest))));
  KILN_TRY(fetch_layers(*client, ref.path(), manifest.layers, progress));
  // The manifest goes in last: its presence never suggests a complete image that is not.
  KILN_TRY(blobs_->write(manifest_body, manifest_digest));

  std::vector<ImageRef> tags;
  if (!ref.digest()) tags.push_back(ref);
  std::vector<std::string> repo_digests = {ref.with_digest(top_digest).to_string()};
  if (manifest_digest != top_digest) repo_digests.push_back(ref.with_digest(manifest_digest).to_string());
  Digest id = KILN_TRY(register_image(manifest_digest, tags, repo_digests, progress));
  progress.on_message(fmt::format("Digest: {}", top_digest));
  emit("pull", ref.familiar(), ref.familiar());
  return id;
}

Result<Digest> ImageStore::push(std::string_view source, const ImageRef& target, const PushOptions& options,
                                ProgressListener& progress) {
  if (target.digest()) return Error::invalid_argument("push needs a tag, not a digest");
  Digest id = KILN_TRY(resolve(source));
  auto record = KILN_TRY(db_->find_image(id));
  if (!record) return Error::not_found(fmt::format("no such image: {}", source));
  auto [manifest, config] = KILN_TRY(read_image(*record));

  // Other repositories of the same registry that hold this image: blobs can be mounted from them.
  std::vector<std::string> mount_sources;
  std::vector<std::string> scopes = {fmt::format("repository:{}:pull,push", target.path())};
  std::vector<std::string> known = KILN_TRY(db_->tags_of(id));
  for (const std::string& ref : KILN_TRY(db_->repo_digests_of(id))) known.push_back(ref);
  for (const std::string& name : known) {
    auto ref = ImageRef::parse(name);
    if (!ref || ref->domain() != target.domain() || ref->path() == target.path()) continue;
    if (std::find(mount_sources.begin(), mount_sources.end(), ref->path()) != mount_sources.end()) continue;
    mount_sources.push_back(ref->path());
    scopes.push_back(fmt::format("repository:{}:pull", ref->path()));
  }
  auto client = KILN_TRY(client_for(target.domain(), scopes, options.credentials));

  std::vector<Descriptor> blobs = manifest.layers;
  blobs.push_back(manifest.config);
  for (const Descriptor& blob : blobs) {
    std::string short_id = blob.digest.short_id();
    auto total = static_cast<uint64_t>(blob.size);
    if (KILN_TRY(client->has_blob(target.path(), blob.digest))) {
      progress.on_progress(
          {.id = short_id, .state = ProgressState::kAlreadyExists, .current = total, .total = total});
      continue;
    }
    bool mounted = false;
    for (const std::string& from : mount_sources) {
      auto result = client->mount_blob(target.path(), blob.digest, from);
      if (result && *result) {
        mounted = true;
        break;
      }
    }
    if (mounted) {
      progress.on_progress(
          {.id = short_id, .state = ProgressState::kMounted, .current = total, .total = total});
      continue;
    }
    UniqueFd fd = KILN_TRY(blobs_->open_blob(blob.digest));
    uint64_t size = KILN_TRY(blobs_->size(blob.digest));
    KILN_TRY_CONTEXT(client->upload_blob(target.path(), blob.digest, fd.get(), size, options.chunk_size,
                                         [&](uint64_t sent) {
                                           progress.on_progress({.id = short_id,
                                                                 .state = ProgressState::kUploading,
                                                                 .current = sent,
                                                                 .total = size});
                                         }),
                     fmt::format("push {}", blob.digest));
    progress.on_progress({.id = short_id, .state = ProgressState::kPushed, .current = size, .total = size});
  }
  std::string body = KILN_TRY(blobs_->read(record->manifest_digest));
  Digest pushed = KILN_TRY(client->put_manifest(target.path(), *target.tag(), manifest.media_type, body));
  KILN_TRY(db_->add_repo_digest(target.with_digest(pushed).to_string(), id));
  progress.on_message(fmt::format("{}: digest: {} size: {}", *target.tag(), pushed, body.size()));
  emit("push", target.familiar(), target.familiar());
  return pushed;
}

}  // namespace kiln::image

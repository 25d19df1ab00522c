// BlobStore: content-addressed files under <dir>/blobs/sha256/<hex>. A blob's name is the SHA-256 of its
// bytes, computed while it is written (never taken from the wire): writes go to <dir>/tmp, are hashed,
// fsynced and renamed into place, so a crash or a kill leaves a whole blob or none. Per-digest file locks
// (<dir>/locks) let concurrent pulls, in one process or several, share one download.
// Thread-safe: the object holds only paths; each BlobWriter belongs to one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/sha256.h"
#include "common/unique_fd.h"
#include "image/digest.h"

namespace kiln::image {

// Streams one blob into the store. Not committed until commit(); the destructor removes an uncommitted
// temp file, so an abandoned or failed write leaves nothing behind.
class BlobWriter {
 public:
  BlobWriter(BlobWriter&&) noexcept = default;
  BlobWriter& operator=(BlobWriter&&) noexcept = default;
  ~BlobWriter();

  Result<void> write(std::string_view chunk);
  uint64_t bytes_written() const { return size_; }
  // Verifies size and digest (when expected), fsyncs, renames into place. Returns the computed digest.
  // A digest mismatch is a kProtocol error naming both digests.
  Result<Digest> commit();

 private:
  friend class BlobStore;
  BlobWriter(std::string store_dir, std::string temp_path, UniqueFd fd, std::optional<Digest> expected,
             std::optional<uint64_t> expected_size);

  std::string store_dir_;
  std::string temp_path_;
  UniqueFd fd_;
  std::unique_ptr<Sha256> hash_;
  std::optional<Digest> expected_;
  std::optional<uint64_t> expected_size_;
  uint64_t size_ = 0;
};

// An advisory lock (flock) held until destruction: exclusive, or shared with other shared holders.
class FileLock {
 public:
  static Result<FileLock> acquire(const std::string& path, bool shared = false);
  FileLock(FileLock&&) noexcept = default;
  FileLock& operator=(FileLock&&) noexcept = default;

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class BlobStore {
 public:
  // Creates <dir>/{blobs/sha256,tmp,locks} as needed.
  static Result<std::unique_ptr<BlobStore>> open(std::string dir);

  bool contains(const Digest& digest) const;
  std::string path(const Digest& digest) const;
  Result<uint64_t> size(const Digest& digest) const;
  // Reads a small blob (manifest, config) whole.
  Result<std::string> read(const Digest& digest, size_t limit = size_t{64} << 20) const;
  Result<UniqueFd> open_blob(const Digest& digest) const;

  // Starts a streaming write. With `expected`, commit() fails unless the bytes hash to it.
  Result<BlobWriter> begin_write(std::optional<Digest> expected = std::nullopt,
                                 std::optional<uint64_t> expected_size = std::nullopt) const;
  // Writes a whole small blob; returns its digest.
  Result<Digest> write(std::string_view data, std::optional<Digest> expected = std::nullopt) const;
  // Copies a file into the store, hashing it.
  Result<Digest> ingest_file(int fd, std::optional<Digest> expected = std::nullopt) const;

  // Blocks until this process holds the lock for `digest` (one downloader per blob at a time).
  Result<FileLock> lock(const Digest& digest) const;
  // Blocks until this process holds the lock for an arbitrary key (e.g. "rootfs-<chainid>").
  Result<FileLock> lock_name(std::string_view name, bool shared = false) const;

  Result<void> remove(const Digest& digest) const;
  Result<std::vector<Digest>> list() const;
  // Removes temp files no live writer holds (left by killed processes).
  Result<void> remove_stale_temp_files() const;

  const std::string& dir() const { return dir_; }
  std::string temp_dir() const { return dir_ + "/tmp"; }

 private:
  explicit BlobStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// mkdir -p; existing directories are fine.
Result<void> make_directories(const std::string& path, int mode = 0755);
// fsync()s a directory so a rename inside it is durable.
Result<void> sync_directory(const std::string& path);

}  // namespace kiln::image

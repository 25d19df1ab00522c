#include "image/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

namespace kiln::image {

Result<void> make_directories(const std::string& path, int mode) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) return Error::from_errno(fmt::format("create directory {}", path), error.value());
  (void)mode;
  return ok();
}

Result<void> sync_directory(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", path));
  if (::fsync(fd.get()) != 0) return Error::last_os_error(fmt::format("fsync {}", path));
  return ok();
}

Result<FileLock> FileLock::acquire(const std::string& path, bool shared) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Error::last_os_error(fmt::format("open lock {}", path));
  while (::flock(fd.get(), shared ? LOCK_SH : LOCK_EX) != 0) {
    if (errno != EINTR) return Error::last_os_error(fmt::format("flock {}", path));
  }
  return FileLock(std::move(fd));
}

BlobWriter::BlobWriter(std::string store_dir, std::string temp_path, UniqueFd fd,
                       std::optional<Digest> expected, std::optional<uint64_t> expected_size)
    : store_dir_(std::move(store_dir)),
      temp_path_(std::move(temp_path)),
      fd_(std::move(fd)),
      hash_(std::make_unique<Sha256>()),
      expected_(std::move(expected)),
      expected_size_(expected_size) {}

BlobWriter::~BlobWriter() {
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Result<void> BlobWriter::write(std::string_view chunk) {
  if (expected_size_ && size_ + chunk.size() > *expected_size_) {
    return Error::protocol(fmt::format("blob {} is larger than the {} bytes its descriptor declares",
                                       expected_ ? expected_->to_string() : "(new)", *expected_size_));
  }
  KILN_TRY(write_all(fd_.get(), chunk));
  hash_->update(chunk);
  size_ += chunk.size();
  return ok();
}

Result<Digest> BlobWriter::commit() {
  Digest actual = KILN_TRY(Digest::from_sha256_hex(hash_->finish_hex()));
  if (expected_size_ && size_ != *expected_size_) {
    return Error::protocol(fmt::format("blob {} has {} bytes, its descriptor declares {}",
                                       expected_ ? expected_->to_string() : actual.to_string(), size_,
                                       *expected_size_));
  }
  if (expected_ && actual != *expected_) {
    return Error::protocol(
        fmt::format("digest mismatch: expected {}, content hashes to {}", *expected_, actual));
  }
  if (::fsync(fd_.get()) != 0) return Error::last_os_error(fmt::format("fsync {}", temp_path_));
  if (::fchmod(fd_.get(), 0444) != 0) return Error::last_os_error(fmt::format("chmod {}", temp_path_));
  std::string final_dir = store_dir_ + "/blobs/sha256";
  std::string final_path = final_dir + "/" + actual.hex();
  if (::rename(temp_path_.c_str(), final_path.c_str()) != 0) {
    return Error::last_os_error(fmt::format("rename {} -> {}", temp_path_, final_path));
  }
  temp_path_.clear();
  fd_.reset();
  KILN_TRY(sync_directory(final_dir));
  return actual;
}

Result<std::unique_ptr<BlobStore>> BlobStore::open(std::string dir) {
  for (const char* sub : {"/blobs/sha256", "/tmp", "/locks"}) KILN_TRY(make_directories(dir + sub));
  return std::unique_ptr<BlobStore>(new BlobStore(std::move(dir)));
}

std::string BlobStore::path(const Digest& digest) const {
  return dir_ + "/blobs/sha256/" + digest.hex();
}

bool BlobStore::contains(const Digest& digest) const {
  struct stat st {};
  return ::stat(path(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<uint64_t> BlobStore::size(const Digest& digest) const {
  struct stat st {};
  if (::stat(path(digest).c_str(), &st) != 0) return Error::last_os_error(fmt::format("blob {}", digest));
  return static_cast<uint64_t>(st.st_size);
}

Result<std::string> BlobStore::read(const Digest& digest, size_t limit) const {
  auto text = read_file(path(digest), limit);
  if (!text) return text.error().with_context(fmt::format("blob {}", digest));
  return text;
}

Result<UniqueFd> BlobStore::open_blob(const Digest& digest) const {
  UniqueFd fd(::open(path(digest).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open blob {}", digest));
  return fd;
}

Result<BlobWriter> BlobStore::begin_write(std::optional<Digest> expected,
                                          std::optional<uint64_t> expected_size) const {
  std::string temp_path = temp_dir() + "/blob-XXXXXX";
  UniqueFd fd(::mkostemp(temp_path.data(), O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("create temp blob in {}", temp_dir()));
  // Held until the writer dies, so remove_stale_temp_files() can tell live temp files from orphans.
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return Error::last_os_error("lock temp blob");
  return BlobWriter(dir_, std::move(temp_path), std::move(fd), std::move(expected), expected_size);
}

Result<Digest> BlobStore::write(std::string_view data, std::optional<Digest> expected) const {
  if (expected && contains(*expected)) {
    if (Digest::of(data) != *expected) {
      return Error::protocol(
          fmt::format("digest mismatch: expected {}, content hashes to {}", *expected, Digest::of(data)));
    }
    return *expected;
  }
  BlobWriter writer = KILN_TRY(begin_write(std::move(expected)));
  KILN_TRY(writer.write(data));
  return writer.commit();
}

Result<Digest> BlobStore::ingest_file(int fd, std::optional<Digest> expected) const {
  BlobWriter writer = KILN_TRY(begin_write(std::move(expected)));
  std::string buffer(1 << 20, '\0');
  while (true) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::last_os_error("read");
    if (n == 0) break;
    KILN_TRY(writer.write(std::string_view(buffer.data(), static_cast<size_t>(n))));
  }
  return writer.commit();
}

Result<FileLock> BlobStore::lock(const Digest& digest) const {
  return lock_name("blob-" + digest.hex());
}

Result<FileLock> BlobStore::lock_name(std::string_view name, bool shared) const {
  return FileLock::acquire(fmt::format("{}/locks/{}", dir_, name), shared);
}

Result<void> BlobStore::remove(const Digest& digest) const {
  if (::unlink(path(digest).c_str()) != 0 && errno != ENOENT) {
    return Error::last_os_error(fmt::format("remove blob {}", digest));
  }
  return ok();
}

Result<std::vector<Digest>> BlobStore::list() const {
  std::vector<Digest> digests;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/blobs/sha256", error)) {
    auto digest = Digest::from_sha256_hex(entry.path().filename().string());
    if (digest) digests.push_back(*digest);
  }
  if (error) return Error::from_errno("list blobs", error.value());
  return digests;
}

Result<void> BlobStore::remove_stale_temp_files() const {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(temp_dir(), error)) {
    std::string path = entry.path().string();
    if (!entry.is_regular_file()) continue;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) continue;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) ::unlink(path.c_str());
  }
  if (error) return Error::from_errno("list temp files", error.value());
  return ok();
}

}  // namespace kiln::image

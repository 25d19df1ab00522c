#include "engine/qemu/guest_ram_copy.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln::engine::qemu {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kChunk = size_t{1} << 20;

// QEMU 7.2 names a memory-backend-memfd's memfd after the backend's type; later versions after its id.
bool is_ram_memfd_link(std::string_view link) {
  return link.starts_with("/memfd:memory-backend-memfd") || link.starts_with("/memfd:ram");
}

bool all_zero(const char* data, size_t size) {
  return data[0] == 0 && std::memcmp(data, data + 1, size - 1) == 0;
}

Result<void> write_all(int fd, const char* data, size_t size, off_t offset, const std::string& path) {
  while (size > 0) {
    ssize_t wrote = ::pwrite(fd, data, size, offset);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return Error::last_os_error(fmt::format("write {}", path));
    data += wrote;
    size -= static_cast<size_t>(wrote);
    offset += wrote;
  }
  return ok();
}

// Copies [begin, end) of `from`, leaving pages of zeros out.
Result<void> copy_range(int from, int to, off_t begin, off_t end, std::vector<char>& buffer,
                        const std::string& path, RamCopyStats& stats) {
  for (off_t at = begin; at < end;) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - at, static_cast<off_t>(buffer.size())));
    ssize_t got = ::pread(from, buffer.data(), want, at);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error::last_os_error("read the guest's RAM");
    if (got == 0) break;
    stats.scanned_bytes += static_cast<uint64_t>(got);
    size_t size = static_cast<size_t>(got);
    // Runs of non-zero pages, each written at once.
    size_t run = 0;
    for (size_t page = 0;; page += kPage) {
      bool end = page >= size;
      if (!end && !all_zero(buffer.data() + page, std::min(kPage, size - page))) continue;
      size_t stop = std::min(page, size);
      if (stop > run) {
        KILN_TRY(write_all(to, buffer.data() + run, stop - run, at + static_cast<off_t>(run), path));
        stats.data_bytes += stop - run;
      }
      if (end) break;
      run = page + kPage;
    }
    at += got;
  }
  return ok();
}

}  // namespace

Result<UniqueFd> open_guest_ram_memfd(pid_t pid, uint64_t bytes) {
  std::string fd_dir = fmt::format("/proc/{}/fd", pid);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(fd_dir.c_str()), ::closedir);
  if (!dir) return Error::last_os_error(fmt::format("list the VM's monitor's files ({})", fd_dir));
  std::vector<std::string> found;
  while (dirent* entry = ::readdir(dir.get())) {  // NOLINT(concurrency-mt-unsafe): own DIR stream
    std::string path = fmt::format("{}/{}", fd_dir, entry->d_name);
    char link[256] = {};
    ssize_t length = ::readlink(path.c_str(), link, sizeof link - 1);
    if (length <= 0 || !is_ram_memfd_link(std::string_view(link, static_cast<size_t>(length)))) continue;
    found.push_back(path);
  }
  std::vector<UniqueFd> matching;
  for (const auto& path : found) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::last_os_error(fmt::format("open the guest's RAM ({})", path));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::last_os_error(fmt::format("stat {}", path));
    if (static_cast<uint64_t>(st.st_size) == bytes) matching.push_back(std::move(fd));
  }
  if (matching.empty()) {
    return Error::failed_precondition(
        "its RAM is not a shared memfd (a VM that is itself a fork, or was restored from a suspend into a "
        "memory file, maps that file private; a booted VM, or one restored from a streamed state, has one)");
  }
  if (matching.size() > 1)
    return Error::failed_precondition(
        fmt::format("its monitor has {} RAM memfds; expected one", matching.size()));
  return std::move(matching.front());
}

Result<RamCopyStats> copy_ram_sparse(int from, const std::string& path) {
  struct stat st {};
  if (::fstat(from, &st) != 0) return Error::last_os_error("stat the guest's RAM");
  UniqueFd to(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!to) return Error::last_os_error(fmt::format("create {}", path));
  RamCopyStats stats{.bytes = static_cast<uint64_t>(st.st_size)};
  if (::ftruncate(to.get(), st.st_size) != 0) return Error::last_os_error(fmt::format("size {}", path));
  std::vector<char> buffer(kChunk);
  off_t at = 0;
  while (at < st.st_size) {
    off_t data = ::lseek(from, at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) return Error::last_os_error("find the guest's RAM pages (SEEK_DATA)");
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    if (hole < 0) return Error::last_os_error("find the guest's RAM pages (SEEK_HOLE)");
    KILN_TRY(copy_range(from, to.get(), data, hole, buffer, path, stats));
    at = hole;
  }
  return stats;
}

}  // namespace kiln::engine::qemu

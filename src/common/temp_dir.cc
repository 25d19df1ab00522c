#include "common/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace kiln {

Result<TempDir> TempDir::create(std::string_view prefix, std::string parent) {
  if (parent.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): read-only use
    parent = (tmpdir && *tmpdir) ? tmpdir : "/tmp";
  }
  std::string pattern = fmt::format("{}/{}XXXXXX", parent, prefix);
  if (!::mkdtemp(pattern.data())) return Error::last_os_error(fmt::format("mkdtemp {}", pattern));
  return TempDir(std::move(pattern));
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) (void)remove_tree(path_);
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

TempDir::~TempDir() {
  if (!path_.empty()) (void)remove_tree(path_);
}

Result<void> remove_tree(const std::string& path) {
  std::error_code error;
  // std::filesystem::remove_all does not follow symlinks: it removes the link, not its target.
  std::filesystem::remove_all(path, error);
  if (error) return Error::from_errno(fmt::format("remove {}", path), error.value());
  return ok();
}

}  // namespace kiln

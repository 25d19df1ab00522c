#include "image/directory_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "common/unique_fd.h"

namespace kiln::image {
namespace {

namespace fs = std::filesystem;

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

Error archive_error(archive* a, std::string_view what) {
  return Error(ErrorCategory::kIo, fmt::format("write tar: {}: {}", what, archive_error_string(a)));
}

Result<void> add_entry(archive* a, const fs::path& path, const std::string& name, bool directory) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Error::last_os_error(fmt::format("stat {}", path.string()));
  std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), directory ? AE_IFDIR : AE_IFREG);
  archive_entry_set_perm(entry.get(), st.st_mode & 07777);
  archive_entry_set_size(entry.get(), directory ? 0 : static_cast<la_int64_t>(st.st_size));
  archive_entry_set_mtime(entry.get(), st.st_mtim.tv_sec, 0);
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) return archive_error(a, name);
  if (directory) return ok();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return Error::last_os_error(fmt::format("open {}", path.string()));
  std::string buffer(size_t{1} << 17, '\0');
  int64_t left = st.st_size;
  while (left > 0) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::last_os_error(fmt::format("read {}", path.string()));
    if (n == 0)
      return Error(ErrorCategory::kIo, fmt::format("{} shrank while it was being archived", path.string()));
    size_t chunk = static_cast<size_t>(std::min<int64_t>(n, left));
    if (archive_write_data(a, buffer.data(), chunk) < 0) return archive_error(a, name);
    left -= static_cast<int64_t>(chunk);
  }
  return ok();
}

}  // namespace

Result<void> write_directory_tar(const std::string& directory, const std::string& output_path) {
  std::error_code error;
  if (!fs::is_directory(directory, error))
    return Error::not_found(fmt::format("{}: not a directory", directory));
  std::unique_ptr<archive, ArchiveWriteFree> writer(archive_write_new());
  archive_write_set_format_pax_restricted(writer.get());
  if (archive_write_open_filename(writer.get(), output_path.c_str()) != ARCHIVE_OK)
    return archive_error(writer.get(), output_path);
  fs::recursive_directory_iterator it(directory, error);
  if (error) return Error::invalid_argument(fmt::format("{}: {}", directory, error.message()));
  for (; it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (error) return Error::invalid_argument(fmt::format("{}: {}", directory, error.message()));
    std::string name = fs::relative(it->path(), directory).generic_string();
    auto status = it->symlink_status(error);
    if (fs::is_directory(status)) {
      KILN_TRY(add_entry(writer.get(), it->path(), name + "/", true));
    } else if (fs::is_regular_file(status)) {
      KILN_TRY(add_entry(writer.get(), it->path(), name, false));
    } else {
      return Error::invalid_argument(fmt::format(
          "{}: {} is not a regular file or directory; an image layout has none", directory, name));
    }
  }
  if (error) return Error::invalid_argument(fmt::format("{}: {}", directory, error.message()));
  if (archive_write_close(writer.get()) != ARCHIVE_OK) return archive_error(writer.get(), "close");
  return ok();
}

}  // namespace kiln::image

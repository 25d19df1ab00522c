#include "guest/cpio_writer.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <utility>

namespace kiln::guest {
namespace {
void pad_to_four(std::string& out) {
  while (out.size() % 4) out.push_back('\0');
}
}  // namespace

// Layout per Linux Documentation/driver-api/early-userspace/buffer-format.rst: "070701", 13 fields of 8 hex
// digits, the NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes.
void CpioWriter::add_entry(std::string_view path, uint32_t mode, std::string_view data, uint32_t rdev_major,
                           uint32_t rdev_minor) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  uint32_t inode = path == "TRAILER!!!" ? 0 : next_inode_++;
  uint32_t links = S_ISDIR(mode) ? 2 : 1;
  archive_ +=
      fmt::format("070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                  inode, mode, 0, 0, links, 0, data.size(), 0, 0, rdev_major, rdev_minor, path.size() + 1, 0);
  archive_.append(path);
  archive_.push_back('\0');
  pad_to_four(archive_);
  archive_.append(data);
  pad_to_four(archive_);
}

void CpioWriter::add_directory(std::string_view path, uint32_t mode) {
  add_entry(path, S_IFDIR | mode, {});
}

void CpioWriter::add_file(std::string_view path, std::string_view contents, uint32_t mode) {
  add_entry(path, S_IFREG | mode, contents);
}

void CpioWriter::add_symlink(std::string_view path, std::string_view target) {
  add_entry(path, S_IFLNK | 0777, target);
}

void CpioWriter::add_char_device(std::string_view path, uint32_t major, uint32_t minor, uint32_t mode) {
  add_entry(path, S_IFCHR | mode, {}, major, minor);
}

std::string CpioWriter::finish() {
  add_entry("TRAILER!!!", 0, {});
  // The kernel accepts any length, but block-align like cpio(1) does.
  while (archive_.size() % 512) archive_.push_back('\0');
  next_inode_ = 1;
  return std::exchange(archive_, {});
}

}  // namespace kiln::guest

// CpioWriter: builds a "newc" cpio archive (the format the Linux kernel unpacks as an initramfs) in memory.
// Entries are written in the order added; parents must be added before children. One thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::guest {

class CpioWriter {
 public:
  void add_directory(std::string_view path, uint32_t mode = 0755);
  void add_file(std::string_view path, std::string_view contents, uint32_t mode = 0644);
  void add_symlink(std::string_view path, std::string_view target);
  void add_char_device(std::string_view path, uint32_t major, uint32_t minor, uint32_t mode = 0600);
  // Appends the trailer and returns the archive; the writer is empty afterwards.
  std::string finish();

 private:
  void add_entry(std::string_view path, uint32_t mode, std::string_view data, uint32_t rdev_major = 0,
                 uint32_t rdev_minor = 0);
  std::string archive_;
  uint32_t next_inode_ = 1;
};

}  // namespace kiln::guest

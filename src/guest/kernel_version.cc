#include "guest/kernel_version.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "common/unique_fd.h"

namespace kiln::guest {
namespace {

// Linux boot protocol (Documentation/arch/x86/boot.rst): the setup header's magic "HdrS" at 0x202, and at
// 0x20E a pointer to a NUL-terminated version string, relative to 0x200.
constexpr off_t kMagicOffset = 0x202;
constexpr off_t kVersionPointerOffset = 0x20E;
constexpr off_t kVersionBase = 0x200;
constexpr size_t kMaxVersionLength = 256;

Result<size_t> read_at(int fd, void* buffer, size_t size, off_t offset) {
  ssize_t n;
  do {
    n = ::pread(fd, buffer, size, offset);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::last_os_error("read the kernel image");
  return static_cast<size_t>(n);
}

}  // namespace

std::string release_of(std::string_view version_string) {
  size_t end = version_string.find_first_of(" \t\n");
  return std::string(version_string.substr(0, end));
}

Result<std::string> kernel_release(const std::string& bzimage_path) {
  UniqueFd fd(::open(bzimage_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", bzimage_path));
  std::array<char, 4> magic{};
  if (KILN_TRY(read_at(fd.get(), magic.data(), magic.size(), kMagicOffset)) != magic.size() ||
      std::memcmp(magic.data(), "HdrS", 4) != 0) {
    return Error::invalid_argument(fmt::format("{} is not a Linux bzImage", bzimage_path));
  }
  std::array<uint8_t, 2> pointer{};
  if (KILN_TRY(read_at(fd.get(), pointer.data(), pointer.size(), kVersionPointerOffset)) != pointer.size())
    return Error::invalid_argument(fmt::format("{}: truncated setup header", bzimage_path));
  unsigned offset = pointer[0] | (static_cast<unsigned>(pointer[1]) << 8);
  if (offset == 0) return Error::invalid_argument(fmt::format("{} carries no version string", bzimage_path));
  std::array<char, kMaxVersionLength> text{};
  size_t n = KILN_TRY(read_at(fd.get(), text.data(), text.size() - 1, kVersionBase + offset));
  std::string version(text.data(), strnlen(text.data(), n));
  if (version.empty())
    return Error::invalid_argument(fmt::format("{} carries no version string", bzimage_path));
  return release_of(version);
}

}  // namespace kiln::guest

#include "common/random_id.h"

#include <fmt/format.h>
#include <sys/random.h>

#include <cerrno>
#include <vector>

namespace kiln {

Result<std::string> random_hex_id(size_t bytes) {
  std::vector<unsigned char> buffer(bytes);
  size_t filled = 0;
  while (filled < bytes) {
    ssize_t n = ::getrandom(buffer.data() + filled, bytes - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::last_os_error("getrandom");
    filled += static_cast<size_t>(n);
  }
  std::string id;
  id.reserve(bytes * 2);
  for (unsigned char byte : buffer) id += fmt::format("{:02x}", byte);
  return id;
}

}  // namespace kiln

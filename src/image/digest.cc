#include "image/digest.h"

#include "common/sha256.h"

namespace kiln::image {

bool is_sha256_hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<Digest> Digest::parse(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Error::invalid_argument(fmt::format("invalid digest '{}': expected ALGORITHM:HEX", text));
  }
  std::string_view algorithm = text.substr(0, colon);
  std::string_view hex = text.substr(colon + 1);
  if (algorithm != "sha256") {
    return Error::unsupported(fmt::format("unsupported digest algorithm '{}' (only sha256)", algorithm));
  }
  return from_sha256_hex(hex);
}

Result<Digest> Digest::from_sha256_hex(std::string_view hex) {
  if (!is_sha256_hex(hex)) {
    return Error::invalid_argument(
        fmt::format("invalid sha256 digest '{}': expected 64 lower-case hex", hex));
  }
  return Digest(std::string(hex));
}

Digest Digest::of(std::string_view data) {
  return Digest(sha256_hex(data));
}

}  // namespace kiln::image

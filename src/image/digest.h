// Digest: a validated content address ("sha256:<64 lower-case hex>"). Digests arrive from registries,
// archives and users, so they are parsed once, here, and carried as this type afterwards; a Digest
// is always well formed and safe to use as a file name. Immutable value type.
#pragma once

#include <compare>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::image {

class Digest {
 public:
  // "sha256:<64 hex>". Other algorithms (sha512, ...) are kUnsupported; malformed text is kInvalidArgument.
  static Result<Digest> parse(std::string_view text);
  // From 64 lower-case hex characters (e.g. Sha256::finish_hex()).
  static Result<Digest> from_sha256_hex(std::string_view hex);
  // SHA-256 of `data`.
  static Digest of(std::string_view data);

  const std::string& hex() const { return hex_; }
  std::string to_string() const { return "sha256:" + hex_; }
  // The first 12 hex characters, as `docker images` shows IDs.
  std::string short_id() const { return hex_.substr(0, 12); }

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 flags the defaulted <=> itself (no 0 literal here)
  auto operator<=>(const Digest&) const = default;

 private:
  explicit Digest(std::string hex) : hex_(std::move(hex)) {}
  std::string hex_;
};

// True for exactly 64 lower-case hex characters.
bool is_sha256_hex(std::string_view text);

}  // namespace kiln::image

template <>
struct fmt::formatter<kiln::image::Digest> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(const kiln::image::Digest& digest, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(digest.to_string(), ctx);
  }
};

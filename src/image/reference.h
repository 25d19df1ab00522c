// ImageRef: a parsed, normalized image reference, exactly as Docker's distribution/reference normalizes
// them ("busybox" -> "docker.io/library/busybox:latest", "host:5000/a/b@sha256:..."). User input is parsed
// once into this type; everything downstream takes an ImageRef. Immutable value type.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "image/digest.h"

namespace kiln::image {

inline constexpr std::string_view kDefaultDomain = "docker.io";
inline constexpr std::string_view kDefaultTag = "latest";

class ImageRef {
 public:
  // Docker's ParseNormalizedNamed + TagNameOnly: a reference with neither tag nor digest gets ":latest".
  static Result<ImageRef> parse(std::string_view text);

  // "docker.io", "localhost:5000", "[::1]:5000".
  const std::string& domain() const { return domain_; }
  // The repository path inside the registry: "library/busybox".
  const std::string& path() const { return path_; }
  const std::optional<std::string>& tag() const { return tag_; }
  const std::optional<Digest>& digest() const { return digest_; }

  // "docker.io/library/busybox".
  std::string repository() const { return domain_ + "/" + path_; }
  // Fully qualified: "docker.io/library/busybox:latest", "host/a@sha256:..", "host/a:t@sha256:..".
  std::string to_string() const;
  // As `docker` prints it: "busybox:latest", "localhost:5000/a:t".
  std::string familiar() const;
  // The repository's familiar name without tag or digest: "busybox".
  std::string familiar_repository() const;

  // The same repository with a different tag (and no digest).
  ImageRef with_tag(std::string tag) const;
  // The same repository pinned to `digest` (no tag).
  ImageRef with_digest(Digest digest) const;

  bool operator==(const ImageRef&) const = default;

 private:
  ImageRef() = default;
  std::string domain_;
  std::string path_;
  std::optional<std::string> tag_;
  std::optional<Digest> digest_;
};

// A tag alone is valid: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool is_valid_tag(std::string_view tag);

}  // namespace kiln::image

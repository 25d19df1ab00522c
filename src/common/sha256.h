// SHA-256 (OpenSSL EVP) for content addressing: incremental hashing of streams and one-shot helpers.
// A Sha256 object belongs to one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(std::string_view data);
  // Lower-case hex of the digest; the object is reset and can hash again afterwards.
  std::string finish_hex();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

std::string sha256_hex(std::string_view data);
// Hashes a file by streaming it.
Result<std::string> sha256_file_hex(const std::string& path);

}  // namespace kiln

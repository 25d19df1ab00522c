#include "common/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "common/unique_fd.h"

namespace kiln {

struct Sha256::Context {
  Context() : md(EVP_MD_CTX_new()) {
    // Allocation failure of a hash context is not a recoverable state for Kiln.
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), nullptr) != 1) std::abort();
  }
  ~Context() { EVP_MD_CTX_free(md); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  EVP_MD_CTX* md;
};

Sha256::Sha256() : context_(std::make_unique<Context>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::string_view data) {
  if (EVP_DigestUpdate(context_->md, data.data(), data.size()) != 1) std::abort();
}

std::string Sha256::finish_hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context_->md, digest, &length) != 1) std::abort();
  if (EVP_DigestInit_ex(context_->md, EVP_sha256(), nullptr) != 1) std::abort();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(size_t{length} * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

std::string sha256_hex(std::string_view data) {
  Sha256 hasher;
  hasher.update(data);
  return hasher.finish_hex();
}

Result<std::string> sha256_file_hex(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", path));
  Sha256 hasher;
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error(fmt::format("read {}", path));
    }
    if (n == 0) break;
    hasher.update(std::string_view(buffer, static_cast<size_t>(n)));
  }
  return hasher.finish_hex();
}

}  // namespace kiln

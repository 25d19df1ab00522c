#include "image/reference.h"

#include <algorithm>
#include <cctype>

namespace kiln::image {
namespace {

constexpr size_t kMaxNameLength = 255;

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

Error invalid(std::string_view text, std::string_view why) {
  return Error::invalid_argument(fmt::format("invalid reference format '{}': {}", text, why));
}

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+
bool is_valid_path_component(std::string_view component) {
  if (component.empty() || !is_lower_alnum(component.front()) || !is_lower_alnum(component.back()))
    return false;
  size_t i = 0;
  while (i < component.size()) {
    if (is_lower_alnum(component[i])) {
      ++i;
      continue;
    }
    size_t start = i;
    while (i < component.size() && !is_lower_alnum(component[i])) ++i;
    std::string_view separator = component.substr(start, i - start);
    bool dashes = std::all_of(separator.begin(), separator.end(), [](char c) { return c == '-'; });
    if (!(separator == "." || separator == "_" || separator == "__" || dashes)) return false;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool is_valid_domain_component(std::string_view component) {
  if (component.empty() || !is_alnum(component.front()) || !is_alnum(component.back())) return false;
  return std::all_of(component.begin(), component.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

bool is_valid_port(std::string_view port) {
  return !port.empty() && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// domain := host [":" port], host := domain-component ("." domain-component)* | "[" IPv6 "]"
bool is_valid_domain(std::string_view domain) {
  std::string_view host = domain;
  if (!domain.empty() && domain.front() == '[') {
    auto close = domain.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view address = domain.substr(1, close - 1);
    if (address.empty() || !std::all_of(address.begin(), address.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        })) {
      return false;
    }
    std::string_view rest = domain.substr(close + 1);
    return rest.empty() || (rest.front() == ':' && is_valid_port(rest.substr(1)));
  }
  if (auto colon = domain.rfind(':'); colon != std::string_view::npos) {
    if (!is_valid_port(domain.substr(colon + 1))) return false;
    host = domain.substr(0, colon);
  }
  size_t start = 0;
  while (true) {
    auto dot = host.find('.', start);
    if (!is_valid_domain_component(host.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool has_upper(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

bool is_valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto word = [](char c) { return is_alnum(c) || c == '_'; };
  if (!word(tag.front())) return false;
  return std::all_of(tag.begin(), tag.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

Result<ImageRef> ImageRef::parse(std::string_view text) {
  if (text.empty()) return invalid(text, "empty reference");
  if (is_sha256_hex(text)) {
    return invalid(text, "cannot specify 64-byte hexadecimal strings as a repository name");
  }
  ImageRef ref;
  std::string_view name = text;
  if (auto at = text.find('@'); at != std::string_view::npos) {
    auto digest = Digest::parse(text.substr(at + 1));
    if (!digest) return invalid(text, digest.error().message());
    ref.digest_ = *digest;
    name = text.substr(0, at);
  }
  // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
  auto last_slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
    std::string_view tag = name.substr(colon + 1);
    if (!is_valid_tag(tag)) return invalid(text, fmt::format("invalid tag '{}'", tag));
    ref.tag_ = std::string(tag);
    name = name.substr(0, colon);
  }
  if (name.empty()) return invalid(text, "empty repository name");

  // splitDockerDomain: the first component is a registry host only if it looks like one.
  std::string_view remainder = name;
  auto slash = name.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    bool looks_like_host = first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
                           has_upper(first) || first.front() == '[';
    if (looks_like_host) {
      if (!is_valid_domain(first)) return invalid(text, fmt::format("invalid registry host '{}'", first));
      ref.domain_ = std::string(first);
      remainder = name.substr(slash + 1);
    }
  }
  if (ref.domain_.empty() || ref.domain_ == "index.docker.io") ref.domain_ = std::string(kDefaultDomain);

  if (has_upper(remainder)) return invalid(text, "repository name must be lowercase");
  size_t start = 0;
  while (true) {
    auto next = remainder.find('/', start);
    std::string_view component =
        remainder.substr(start, next == std::string_view::npos ? next : next - start);
    if (!is_valid_path_component(component)) {
      return invalid(text, fmt::format("invalid repository path component '{}'", component));
    }
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  ref.path_ = std::string(remainder);
  if (ref.domain_ == kDefaultDomain && ref.path_.find('/') == std::string::npos) {
    ref.path_ = "library/" + ref.path_;
  }
  if (ref.domain_.size() + 1 + ref.path_.size() > kMaxNameLength) {
    return invalid(text, fmt::format("repository name longer than {} characters", kMaxNameLength));
  }
  if (!ref.tag_ && !ref.digest_) ref.tag_ = std::string(kDefaultTag);
  return ref;
}

std::string ImageRef::to_string() const {
  std::string out = repository();
  if (tag_) out += ":" + *tag_;
  if (digest_) out += "@" + digest_->to_string();
  return out;
}

std::string ImageRef::familiar_repository() const {
  if (domain_ != kDefaultDomain) return repository();
  constexpr std::string_view kLibrary = "library/";
  if (path_.starts_with(kLibrary) && path_.find('/', kLibrary.size()) == std::string::npos) {
    return path_.substr(kLibrary.size());
  }
  return path_;
}

std::string ImageRef::familiar() const {
  std::string out = familiar_repository();
  if (tag_) out += ":" + *tag_;
  if (digest_) out += "@" + digest_->to_string();
  return out;
}

ImageRef ImageRef::with_tag(std::string tag) const {
  ImageRef ref = *this;
  ref.tag_ = std::move(tag);
  ref.digest_.reset();
  return ref;
}

ImageRef ImageRef::with_digest(Digest digest) const {
  ImageRef ref = *this;
  ref.tag_.reset();
  ref.digest_ = std::move(digest);
  return ref;
}

}  // namespace kiln::image

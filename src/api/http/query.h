// Percent-decoding and query-string parsing for request targets. Decoding is strict: a malformed escape
// ("%G1", a trailing "%") is an error, which the server answers with 400. Plain values; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace kiln::api::http {

// "%2F" -> "/". With `plus_is_space` (query strings, per HTML forms), "+" -> " ".
Result<std::string> percent_decode(std::string_view text, bool plus_is_space = false);

// The decoded key=value pairs of a query string, in order, repeated keys kept (Docker sends `filters`
// once but `?force=1&force=0` must not silently merge).
class QueryParams {
 public:
  // `query` is the part after '?', without it. "a" alone is key "a" with an empty value.
  static Result<QueryParams> parse(std::string_view query);

  // The first value for `key`.
  std::optional<std::string_view> get(std::string_view key) const;
  std::vector<std::string_view> get_all(std::string_view key) const;
  bool has(std::string_view key) const { return get(key).has_value(); }
  // Docker's boolean convention: absent -> fallback; "", "0", "false", "False", "no" -> false; else true.
  bool get_bool(std::string_view key, bool fallback = false) const;

  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

}  // namespace kiln::api::http

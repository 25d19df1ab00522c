// Percent-decoding and query-string parsing for request targets. Decoding is strict: a malformed escape
// ("%G1", a trailing "%") is an error, which the server answers with 400. Plain values; any thread.
#pragma once

#include <chrono>
#include <concepts>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/units.h"

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

  // `key` as a whole number from `min` to `max` (common/units.h parse_unsigned); absent -> nullopt. "-1",
  // junk or overflow is kInvalidArgument naming the parameter, which the API answers with 400.
  template <std::unsigned_integral T>
  Result<std::optional<T>> get_unsigned(std::string_view key, T min = 0,
                                        T max = std::numeric_limits<T>::max()) const {
    auto text = get(key);
    if (!text) return std::optional<T>();
    auto value = parse_unsigned<T>(*text, parameter_name(key), min, max);
    if (!value) return value.error();
    return std::optional<T>(*value);
  }
  // `key` as a duration up to `max` (common/units.h parse_duration: "10" is seconds); absent -> nullopt.
  Result<std::optional<std::chrono::milliseconds>> get_duration(std::string_view key,
                                                                std::chrono::milliseconds max) const;

  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  static std::string parameter_name(std::string_view key);

  std::vector<std::pair<std::string, std::string>> entries_;
};

}  // namespace kiln::api::http

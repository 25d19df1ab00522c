#include "api/http/query.h"

namespace kiln::api::http {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      int high = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
      int low = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
      if (high < 0 || low < 0) {
        return Error::invalid_argument(fmt::format("malformed percent-escape at offset {}", i));
      }
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<QueryParams> QueryParams::parse(std::string_view query) {
  QueryParams params;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;  // "a=1&&b=2"
    size_t eq = pair.find('=');
    std::string_view raw_key = pair.substr(0, eq);
    std::string_view raw_value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    std::string key = KILN_TRY_CONTEXT(percent_decode(raw_key, true), "query string");
    std::string value = KILN_TRY_CONTEXT(percent_decode(raw_value, true), "query string");
    params.entries_.emplace_back(std::move(key), std::move(value));
  }
  return params;
}

std::optional<std::string_view> QueryParams::get(std::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

std::vector<std::string_view> QueryParams::get_all(std::string_view key) const {
  std::vector<std::string_view> values;
  for (const auto& [k, v] : entries_) {
    if (k == key) values.emplace_back(v);
  }
  return values;
}

std::string QueryParams::parameter_name(std::string_view key) {
  return fmt::format("query parameter {}", key);
}

Result<std::optional<std::chrono::milliseconds>> QueryParams::get_duration(
    std::string_view key, std::chrono::milliseconds max) const {
  auto text = get(key);
  if (!text) return std::optional<std::chrono::milliseconds>();
  auto value = parse_duration(*text, parameter_name(key), max);
  if (!value) return value.error();
  return std::optional<std::chrono::milliseconds>(*value);
}

bool QueryParams::get_bool(std::string_view key, bool fallback) const {
  auto value = get(key);
  if (!value) return fallback;
  return !(value->empty() || *value == "0" || *value == "false" || *value == "False" || *value == "no");
}

}  // namespace kiln::api::http

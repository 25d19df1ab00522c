#include "api/docker/filters.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <algorithm>
#include <regex>

#include "common/json.h"

namespace kiln::api::docker {

Result<Filters> Filters::parse(const http::QueryParams& query, const std::set<std::string_view>& supported) {
  Filters filters;
  auto text = query.get("filters");
  if (!text || text->empty()) return filters;
  auto json = parse_json(*text);
  if (!json || !json->is_object())
    return Error::invalid_argument(fmt::format("invalid filters: {} is not a JSON object", *text));
  for (const auto& [name, value] : json->items()) {
    if (!supported.contains(name)) return Error::invalid_argument(fmt::format("invalid filter '{}'", name));
    auto& values = filters.values_[name];
    if (value.is_array()) {
      for (const auto& item : value) {
        if (!item.is_string())
          return Error::invalid_argument(fmt::format("invalid filter '{}': values must be strings", name));
        values.push_back(item.get<std::string>());
      }
    } else if (value.is_object()) {
      for (const auto& [item, on] : value.items()) {
        if (!on.is_boolean())
          return Error::invalid_argument(
              fmt::format("invalid filter '{}': expected {{\"VALUE\": true}}", name));
        if (on.get<bool>()) values.push_back(item);
      }
    } else {
      return Error::invalid_argument(fmt::format("invalid filter '{}': expected a list of values", name));
    }
  }
  return filters;
}

const std::vector<std::string>& Filters::get(std::string_view name) const {
  static const std::vector<std::string> kNone;
  auto it = values_.find(name);
  return it == values_.end() ? kNone : it->second;
}

Result<std::optional<bool>> Filters::boolean(std::string_view name) const {
  const auto& values = get(name);
  if (values.empty()) return std::optional<bool>();
  std::optional<bool> result;
  for (const std::string& value : values) {
    bool parsed;
    if (value == "true" || value == "1") {
      parsed = true;
    } else if (value == "false" || value == "0") {
      parsed = false;
    } else {
      return Error::invalid_argument(
          fmt::format("invalid filter '{}={}': expected true or false", name, value));
    }
    if (result && *result != parsed)
      return Error::invalid_argument(fmt::format("conflicting values for the filter '{}'", name));
    result = parsed;
  }
  return result;
}

bool glob_matches(std::string_view pattern, std::string_view text) {
  return ::fnmatch(std::string(pattern).c_str(), std::string(text).c_str(), FNM_PATHNAME) == 0;
}

bool reference_matches(std::string_view pattern, std::string_view familiar) {
  // The repository is everything before the last ':' that follows the last '/'.
  auto split = [](std::string_view ref) {
    size_t slash = ref.rfind('/');
    size_t colon = ref.rfind(':');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash))
      return std::pair(ref.substr(0, colon), ref.substr(colon + 1));
    return std::pair(ref, std::string_view());
  };
  // A digest reference ("busybox@sha256:...") matches by its repository, as dockerd's FamiliarMatch does for
  // patterns without a digest.
  if (size_t at = familiar.find('@'); at != std::string_view::npos) {
    if (pattern.find('@') != std::string_view::npos) return glob_matches(pattern, familiar);
    auto [pattern_repo, pattern_tag] = split(pattern);
    return pattern_tag.empty() && glob_matches(pattern_repo, familiar.substr(0, at));
  }
  auto [pattern_repo, pattern_tag] = split(pattern);
  auto [repo, tag] = split(familiar);
  if (!glob_matches(pattern_repo, repo)) return false;
  return pattern_tag.empty() || glob_matches(pattern_tag, tag);
}

bool labels_match_all(const std::vector<std::string>& wanted,
                      const std::map<std::string, std::string>& labels) {
  return std::all_of(wanted.begin(), wanted.end(), [&labels](const std::string& item) {
    size_t equals = item.find('=');
    auto found = labels.find(item.substr(0, equals));
    if (found == labels.end()) return false;
    return equals == std::string::npos || found->second == item.substr(equals + 1);
  });
}

bool regex_matches(const std::vector<std::string>& patterns, const std::string& value) {
  if (patterns.empty()) return true;
  return std::any_of(patterns.begin(), patterns.end(), [&value](const std::string& pattern) {
    try {
      return std::regex_search(value, std::regex(pattern));
    } catch (const std::regex_error&) {
      return false;
    }
  });
}

bool exact_match(const std::vector<std::string>& values, const std::string& value) {
  return values.empty() || std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace kiln::api::docker

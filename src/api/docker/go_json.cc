#include "api/docker/go_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

namespace kiln::api::docker {

bool equal_fold(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  });
}

// Go matches JSON keys to struct fields exactly first, then case-insensitively. Null is absent.
const Json* find_field(const Json& object, std::string_view name) {
  if (!object.is_object()) return nullptr;
  const Json* found = nullptr;
  if (auto it = object.find(name); it != object.end()) {
    found = &*it;
  } else {
    for (const auto& [key, value] : object.items()) {
      if (equal_fold(key, name)) {
        found = &value;
        break;
      }
    }
  }
  return found == nullptr || found->is_null() ? nullptr : found;
}

std::string json_kind(const Json& value) {
  if (value.is_string()) return "string";
  if (value.is_boolean()) return "bool";
  if (value.is_array()) return "array";
  if (value.is_object()) return "object";
  if (value.is_number()) return "number";
  return "null";
}

bool has_field(const Json& object, std::string_view name) {
  if (!object.is_object()) return false;
  return std::any_of(object.items().begin(), object.items().end(),
                     [&](const auto& item) { return equal_fold(item.key(), name); });
}

Error unmarshal_kind_error(std::string_view kind, const GoField& field, std::string_view go_type) {
  return Error::invalid_argument(
      fmt::format("json: cannot unmarshal {} into Go struct field {}.{} of type {}", kind, field.go_struct,
                  field.path, go_type));
}

Error unmarshal_error(const Json& value, const GoField& field, std::string_view go_type) {
  return unmarshal_kind_error(json_kind(value), field, go_type);
}

GoField StructReader::field(std::string_view name) const {
  return {go_struct_, prefix_.empty() ? std::string(name) : fmt::format("{}.{}", prefix_, name)};
}

Result<std::optional<std::string>> StructReader::string(std::string_view name,
                                                        std::string_view go_type) const {
  const Json* value = find(name);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return unmarshal_error(*value, field(name), go_type);
  return std::optional<std::string>(value->get<std::string>());
}

Result<std::optional<bool>> StructReader::boolean(std::string_view name) const {
  const Json* value = find(name);
  if (value == nullptr) return std::optional<bool>();
  if (!value->is_boolean()) return unmarshal_error(*value, field(name), "bool");
  return std::optional<bool>(value->get<bool>());
}

Result<std::optional<int64_t>> StructReader::integer(std::string_view name, std::string_view go_type) const {
  const Json* value = find(name);
  if (value == nullptr) return std::optional<int64_t>();
  return KILN_TRY(read_integer(*value, field(name), go_type));
}

Result<std::optional<std::vector<std::string>>> StructReader::string_list(std::string_view name) const {
  const Json* value = find(name);
  if (value == nullptr) return std::optional<std::vector<std::string>>();
  if (!value->is_array()) return unmarshal_error(*value, field(name), "[]string");
  std::vector<std::string> items;
  for (const auto& item : *value) {
    if (item.is_null()) {
      items.emplace_back();
    } else if (item.is_string()) {
      items.push_back(item.get<std::string>());
    } else {
      return unmarshal_error(item, field(name), "string");
    }
  }
  return std::optional(std::move(items));
}

Result<std::optional<std::vector<std::string>>> StructReader::strslice(std::string_view name) const {
  const Json* value = find(name);
  if (value == nullptr) return std::optional<std::vector<std::string>>();
  if (value->is_string()) return std::optional(std::vector<std::string>{value->get<std::string>()});
  bool all_strings = value->is_array() && std::all_of(value->begin(), value->end(), [](const Json& item) {
                       return item.is_string() || item.is_null();
                     });
  if (!all_strings) return unmarshal_error(*value, field(name), "string");
  std::vector<std::string> items;
  for (const auto& item : *value) items.push_back(item.is_string() ? item.get<std::string>() : "");
  return std::optional(std::move(items));
}

Result<std::optional<std::map<std::string, std::string>>> StructReader::string_map(
    std::string_view name) const {
  const Json* value = find(name);
  if (value == nullptr) return std::optional<std::map<std::string, std::string>>();
  if (!value->is_object()) return unmarshal_error(*value, field(name), "map[string]string");
  std::map<std::string, std::string> items;
  for (const auto& [key, item] : value->items()) {
    if (item.is_null()) {
      items[key] = "";
    } else if (item.is_string()) {
      items[key] = item.get<std::string>();
    } else {
      return unmarshal_error(item, field(name), "string");
    }
  }
  return std::optional(std::move(items));
}

Result<const Json*> StructReader::object(std::string_view name, std::string_view go_type) const {
  const Json* value = find(name);
  if (value == nullptr) return static_cast<const Json*>(nullptr);
  if (!value->is_object()) return unmarshal_error(*value, field(name), go_type);
  return value;
}

Result<int64_t> StructReader::read_integer(const Json& value, const GoField& field,
                                           std::string_view go_type) {
  if (value.is_number_integer() && !value.is_number_unsigned()) return value.get<int64_t>();
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return static_cast<int64_t>(value.get<uint64_t>());
    return unmarshal_kind_error(fmt::format("number {}", value.dump()), field, go_type);
  }
  if (value.is_number()) return unmarshal_kind_error(fmt::format("number {}", value.dump()), field, go_type);
  return unmarshal_error(value, field, go_type);
}

}  // namespace kiln::api::docker

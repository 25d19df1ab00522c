#include "common/json.h"

#include <algorithm>

namespace kiln {

Result<Json> parse_json(std::string_view text) {
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Error::invalid_argument("invalid JSON");
  return value;
}

Result<void> reject_unknown_fields(const Json& object, std::span<const std::string_view> allowed) {
  if (!object.is_object()) return Error::invalid_argument("expected a JSON object");
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Error::invalid_argument(fmt::format("unknown field \"{}\"", key));
    }
  }
  return ok();
}

namespace {
const Json* find_field(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}
Error wrong_type(std::string_view key, std::string_view expected) {
  return Error::invalid_argument(fmt::format("field \"{}\" must be {}", key, expected));
}
Error missing(std::string_view key) {
  return Error::invalid_argument(fmt::format("field \"{}\" is required", key));
}
}  // namespace

Result<std::optional<std::string>> optional_string(const Json& object, std::string_view key) {
  const Json* field = find_field(object, key);
  if (!field) return std::optional<std::string>{};
  if (!field->is_string()) return wrong_type(key, "a string");
  return std::optional<std::string>(field->get<std::string>());
}

Result<std::optional<int64_t>> optional_int(const Json& object, std::string_view key) {
  const Json* field = find_field(object, key);
  if (!field) return std::optional<int64_t>{};
  if (!field->is_number_integer()) return wrong_type(key, "an integer");
  return std::optional<int64_t>(field->get<int64_t>());
}

Result<std::optional<bool>> optional_bool(const Json& object, std::string_view key) {
  const Json* field = find_field(object, key);
  if (!field) return std::optional<bool>{};
  if (!field->is_boolean()) return wrong_type(key, "a boolean");
  return std::optional<bool>(field->get<bool>());
}

Result<std::string> required_string(const Json& object, std::string_view key) {
  auto value = KILN_TRY(optional_string(object, key));
  if (!value) return missing(key);
  return std::move(*value);
}

Result<int64_t> required_int(const Json& object, std::string_view key) {
  auto value = KILN_TRY(optional_int(object, key));
  if (!value) return missing(key);
  return *value;
}

}  // namespace kiln

// JSON helpers over nlohmann::json: parsing that returns Result instead of throwing, and strict accessors
// for request bodies (wrong type, missing field, unknown field -> kInvalidArgument with the field named).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln {

using Json = nlohmann::json;

Result<Json> parse_json(std::string_view text);

// Fails naming the first key of `object` that is not in `allowed` (or if `object` is not an object).
Result<void> reject_unknown_fields(const Json& object, std::span<const std::string_view> allowed);

// Field accessors: nullopt when absent (or null); an error when present with the wrong type.
Result<std::optional<std::string>> optional_string(const Json& object, std::string_view key);
Result<std::optional<int64_t>> optional_int(const Json& object, std::string_view key);
Result<std::optional<bool>> optional_bool(const Json& object, std::string_view key);
// Same, but absence is an error too.
Result<std::string> required_string(const Json& object, std::string_view key);
Result<int64_t> required_int(const Json& object, std::string_view key);

}  // namespace kiln

// Go's encoding/json as dockerd's request bodies show it: a struct field's key matched exactly first, then
// case-insensitively; null (or a missing key) leaves the field's zero value; a JSON value of the wrong type
// is dockerd's 400 "json: cannot unmarshal number into Go struct field VolumeCreateBody.Name of type string".
// One reader for every Docker route's body (containers, networks, volumes). Plain functions; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json.h"

namespace kiln::api::docker {

// The JSON kind Go's encoding/json names in a type error: "string", "bool", "array", "object", "number".
std::string json_kind(const Json& value);
// Go's strings.EqualFold for ASCII field names.
bool equal_fold(std::string_view a, std::string_view b);
// How Go's encoding/json finds a struct field's key: exactly first, then case-insensitively; null (or a
// missing key, or `object` not an object) is nullptr.
const Json* find_field(const Json& object, std::string_view name);
// Whether `object` has the key at all (any case), null included.
bool has_field(const Json& object, std::string_view name);

// Go's type error names the innermost struct's type and the field's path from the top (Go 1.19, as the
// dockerd 20.10 this was checked against prints it): "HostConfig.HostConfig.Memory".
struct GoField {
  std::string_view go_struct;  // "ContainerConfigWrapper", "HostConfig", "RestartPolicy", ...
  std::string path;            // "Env", "HostConfig.Memory", "HostConfig.RestartPolicy.Name"
};

Error unmarshal_kind_error(std::string_view kind, const GoField& field, std::string_view go_type);
Error unmarshal_error(const Json& value, const GoField& field, std::string_view go_type);

// Reads the fields of one Go struct of a body: `object` is the struct's JSON, `go_struct` its Go type name,
// `prefix` its path from the body's top ("" for the top struct). Absent or null fields are nullopt.
class StructReader {
 public:
  StructReader(const Json& object, std::string_view go_struct, std::string prefix = {})
      : object_(object), go_struct_(go_struct), prefix_(std::move(prefix)) {}

  GoField field(std::string_view name) const;
  const Json* find(std::string_view name) const { return find_field(object_, name); }

  Result<std::optional<std::string>> string(std::string_view name, std::string_view go_type = "string") const;
  Result<std::optional<bool>> boolean(std::string_view name) const;
  Result<std::optional<int64_t>> integer(std::string_view name, std::string_view go_type) const;
  // []string: a list of strings (null items are "").
  Result<std::optional<std::vector<std::string>>> string_list(std::string_view name) const;
  // moby's strslice: a list of strings or one string; anything else fails as the string attempt does.
  Result<std::optional<std::vector<std::string>>> strslice(std::string_view name) const;
  // map[string]string (null values are "").
  Result<std::optional<std::map<std::string, std::string>>> string_map(std::string_view name) const;
  // A nested struct: absent/null -> nullptr.
  Result<const Json*> object(std::string_view name, std::string_view go_type) const;

  static Result<int64_t> read_integer(const Json& value, const GoField& field, std::string_view go_type);

 private:
  const Json& object_;
  std::string_view go_struct_;
  std::string prefix_;
};

}  // namespace kiln::api::docker

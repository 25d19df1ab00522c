#include "api/docker/container_mounts.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <optional>
#include <set>

#include "api/docker/container_json.h"
#include "common/clean_path.h"

namespace kiln::api::docker {

namespace {

using daemon::containers::MountPoint;

constexpr std::array<std::string_view, 6> kPropagations = {"private", "rprivate", "shared",
                                                           "rshared", "slave",    "rslave"};
constexpr std::array<std::string_view, 4> kConsistencies = {"consistent", "cached", "delegated", "default"};

bool is_one_of(std::string_view word, auto&& words) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// moby's linuxValidMountMode: comma-separated words, at most one of each kind.
bool valid_mount_mode(std::string_view mode) {
  if (mode.empty()) return true;
  int rw = 0, label = 0, propagation = 0, copy = 0, consistency = 0;
  for (std::string_view word : split(mode, ',')) {
    if (word == "rw" || word == "ro") {
      ++rw;
    } else if (word == "z" || word == "Z") {
      ++label;
    } else if (is_one_of(word, kPropagations)) {
      ++propagation;
    } else if (word == "nocopy") {
      ++copy;
    } else if (is_one_of(word, kConsistencies)) {
      ++consistency;
    } else {
      return false;
    }
  }
  return rw <= 1 && label <= 1 && propagation <= 1 && copy <= 1 && consistency <= 1;
}

bool mode_has(std::string_view mode, std::string_view wanted) {
  auto words = split(mode, ',');
  return std::find(words.begin(), words.end(), wanted) != words.end();
}

std::string mode_propagation(std::string_view mode) {
  for (std::string_view word : split(mode, ','))
    if (is_one_of(word, kPropagations)) return std::string(word);
  return {};
}

Error mount_config_error(std::string_view type, std::string_view message) {
  return Error::invalid_argument(fmt::format("invalid mount config for type \"{}\": {}", type, message));
}

// linuxValidateNotRoot and linuxValidateAbsolute, on the target as given.
std::optional<std::string> destination_problem(std::string_view target) {
  std::string cleaned = clean_absolute_path(target);
  if (!target.empty() && target.front() == '/' && cleaned == "/")
    return std::string("invalid specification: destination can't be '/'");
  if (target.empty() || target.front() != '/')
    return fmt::format("invalid mount path: '{}' mount path must be absolute", target);
  return std::nullopt;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// The mount.Mount fields the parser reads, with their Go types checked.
struct MountSpec {
  std::string type;
  std::string source;
  std::string target;
  bool read_only = false;
  const Json* bind_options = nullptr;
  const Json* volume_options = nullptr;
  const Json* tmpfs_options = nullptr;
};

Result<std::string> string_field(const Json& object, std::string_view name, std::string_view where) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return Error::invalid_argument(fmt::format(
        "json: cannot unmarshal {} into Go struct field {}.{} of type string", json_kind(*it), where, name));
  return it->get<std::string>();
}

const Json* object_field(const Json& object, std::string_view name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

Result<MountSpec> read_mount_spec(const Json& item) {
  if (!item.is_object())
    return Error::invalid_argument(fmt::format(
        "json: cannot unmarshal {} into Go struct field HostConfig.HostConfig.Mounts of type mount.Mount",
        json_kind(item)));
  constexpr std::string_view kWhere = "HostConfig.HostConfig.Mounts";
  MountSpec spec;
  spec.type = KILN_TRY(string_field(item, "Type", kWhere));
  spec.source = KILN_TRY(string_field(item, "Source", kWhere));
  spec.target = KILN_TRY(string_field(item, "Target", kWhere));
  if (auto it = item.find("ReadOnly"); it != item.end() && !it->is_null()) {
    if (!it->is_boolean())
      return Error::invalid_argument(fmt::format(
          "json: cannot unmarshal {} into Go struct field {}.ReadOnly of type bool", json_kind(*it), kWhere));
    spec.read_only = it->get<bool>();
  }
  spec.bind_options = object_field(item, "BindOptions");
  spec.volume_options = object_field(item, "VolumeOptions");
  spec.tmpfs_options = object_field(item, "TmpfsOptions");
  return spec;
}

// moby's ConvertTmpfsOptions: "ro", "mode=<octal>", "size=<n>[kmg]" from the API's TmpfsOptions.
Result<std::string> tmpfs_options_text(const Json* options, bool read_only) {
  std::vector<std::string> words;
  if (read_only) words.emplace_back("ro");
  if (options != nullptr && options->is_object()) {
    if (auto mode = options->find("Mode"); mode != options->end() && mode->is_number_integer()) {
      int64_t value = mode->get<int64_t>();
      if (value != 0) words.push_back(fmt::format("mode={:o}", value));
    }
    if (auto size = options->find("SizeBytes"); size != options->end() && size->is_number_integer()) {
      int64_t value = size->get<int64_t>();
      if (value < 0) return Error::invalid_argument(fmt::format("invalid tmpfs size {}", value));
      if (value != 0) {
        std::string suffix;
        for (auto [unit, divisor] :
             {std::pair{"g", int64_t{1} << 30}, {"m", int64_t{1} << 20}, {"k", int64_t{1} << 10}}) {
          if (value % divisor == 0) {
            value /= divisor;
            suffix = unit;
            break;
          }
        }
        words.push_back(fmt::format("size={}{}", value, suffix));
      }
    }
  }
  std::string text;
  for (const auto& word : words) text += (text.empty() ? "" : ",") + word;
  return text;
}

// What dockerd adds to every tmpfs before the user's options (daemon/oci_linux.go).
std::string tmpfs_mount_options(std::string_view options) {
  std::string text = "noexec,nosuid,nodev";
  if (!options.empty()) text += fmt::format(",{}", options);
  return text;
}

// validateMountConfigImpl, then parseMountSpec.
Result<MountPoint> mount_from_spec(const MountSpec& spec, bool bind_source_must_exist) {
  const std::string& type = spec.type;
  if (spec.target.empty()) return mount_config_error(type, "field Target must not be empty");
  if (auto problem = destination_problem(spec.target)) return mount_config_error(type, *problem);
  MountPoint mount;
  mount.destination = clean_absolute_path(spec.target);
  mount.read_only = spec.read_only;
  if (type == "bind") {
    mount.type = MountPoint::Type::kBind;
    if (spec.source.empty()) return mount_config_error(type, "field Source must not be empty");
    std::string propagation;
    if (spec.bind_options != nullptr && spec.bind_options->is_object()) {
      propagation = spec.bind_options->value("Propagation", "");
      if (!propagation.empty() && !is_one_of(propagation, kPropagations))
        return mount_config_error(type, fmt::format("invalid propagation mode: {}", propagation));
    }
    if (spec.volume_options != nullptr)
      return mount_config_error(type, "field VolumeOptions must not be specified");
    if (spec.source.front() != '/')
      return mount_config_error(
          type, fmt::format("invalid mount path: '{}' mount path must be absolute", spec.source));
    mount.source = clean_absolute_path(spec.source);
    if (bind_source_must_exist && !path_exists(mount.source))
      return mount_config_error(type, fmt::format("bind source path does not exist: {}", mount.source));
    mount.propagation = propagation.empty() ? "rprivate" : propagation;
    return mount;
  }
  if (type == "volume") {
    mount.type = MountPoint::Type::kVolume;
    if (spec.bind_options != nullptr)
      return mount_config_error(type, "field BindOptions must not be specified");
    if (spec.source.empty() && spec.read_only)
      return mount_config_error(type, "must not set ReadOnly mode when using anonymous volumes");
    mount.name = spec.source;
    mount.anonymous = spec.source.empty();
    mount.mode = mount.anonymous ? "" : "z";  // dockerd shows a named volume's (SELinux label) mode so
    mount.copy_up = true;
    if (spec.volume_options != nullptr && spec.volume_options->is_object()) {
      if (auto nocopy = spec.volume_options->find("NoCopy");
          nocopy != spec.volume_options->end() && nocopy->is_boolean() && nocopy->get<bool>())
        mount.copy_up = false;
      if (auto labels = spec.volume_options->find("Labels");
          labels != spec.volume_options->end() && labels->is_object()) {
        for (const auto& [key, value] : labels->items()) {
          if (!value.is_string())
            return Error::invalid_argument(
                fmt::format("json: cannot unmarshal {} into Go struct field "
                            "VolumeOptions.HostConfig.Mounts.VolumeOptions.Labels "
                            "of type string",
                            json_kind(value)));
          mount.volume_labels[key] = value.get<std::string>();
        }
      }
      if (auto driver = spec.volume_options->find("DriverConfig");
          driver != spec.volume_options->end() && driver->is_object()) {
        std::string name = driver->value("Name", "");
        if (!name.empty() && name != "local")
          return Error::not_found(
              fmt::format("error looking up volume plugin {}: plugin \"{}\" not found", name, name));
      }
    }
    return mount;
  }
  if (type == "tmpfs") {
    mount.type = MountPoint::Type::kTmpfs;
    if (spec.bind_options != nullptr)
      return mount_config_error(type, "field BindOptions must not be specified");
    if (!spec.source.empty()) return mount_config_error(type, "field Source must not be specified");
    mount.tmpfs_options =
        tmpfs_mount_options(KILN_TRY(tmpfs_options_text(spec.tmpfs_options, spec.read_only)));
    return mount;
  }
  if (type == "npipe" || type == "cluster")
    return mount_config_error(type, "mount type is not supported by Kiln");
  return mount_config_error(type, "mount type unknown");
}

// ParseMountRaw: a -v string.
Result<MountPoint> mount_from_bind_string(const std::string& raw) {
  auto invalid_spec = [&] {
    return Error::invalid_argument(fmt::format("invalid volume specification: '{}'", raw));
  };
  if (std::count(raw.begin(), raw.end(), ':') > 2) return invalid_spec();
  std::vector<std::string_view> parts = split(raw, ':');
  if (parts[0].empty()) return invalid_spec();
  MountSpec spec;
  std::string mode;
  if (parts.size() == 1) {
    spec.target = std::string(parts[0]);
  } else if (parts.size() == 2) {
    // "/foo:rw" names a destination and a mode: a volume cannot have a mode without a source.
    if (valid_mount_mode(parts[1])) return invalid_spec();
    spec.source = std::string(parts[0]);
    spec.target = std::string(parts[1]);
  } else {
    spec.source = std::string(parts[0]);
    spec.target = std::string(parts[1]);
    mode = std::string(parts[2]);
  }
  if (!valid_mount_mode(mode)) return Error::invalid_argument(fmt::format("invalid mode: {}", mode));
  spec.type = spec.source.starts_with('/') ? "bind" : "volume";
  spec.read_only = mode_has(mode, "ro");
  Json bind_options;
  if (std::string propagation = mode_propagation(mode); !propagation.empty()) {
    bind_options = {{"Propagation", propagation}};
    spec.bind_options = &bind_options;
  }
  Json volume_options;
  if (mode_has(mode, "nocopy")) {
    volume_options = {{"NoCopy", true}};
    spec.volume_options = &volume_options;
  }
  auto mount = mount_from_spec(spec, false);
  if (!mount)
    return Error::invalid_argument(
        fmt::format("invalid volume specification: '{}': {}", raw, mount.error().message()));
  if (!mode.empty() || mount->type != MountPoint::Type::kVolume) mount->mode = mode;
  mount->create_source = mount->type == MountPoint::Type::kBind;
  return mount;
}

}  // namespace

Result<std::vector<MountPoint>> parse_container_mounts(const MountOptionsInput& input) {
  std::vector<MountPoint> mounts;
  std::set<std::string> destinations;
  auto add = [&](MountPoint mount, std::string_view as_given) -> Result<void> {
    if (!destinations.insert(mount.destination).second)
      return Error::invalid_argument(fmt::format("Duplicate mount point: {}", as_given));
    mounts.push_back(std::move(mount));
    return ok();
  };
  if (input.mounts != nullptr && !input.mounts->is_null()) {
    if (!input.mounts->is_array())
      return Error::invalid_argument(fmt::format(
          "json: cannot unmarshal {} into Go struct field HostConfig.HostConfig.Mounts of type []mount.Mount",
          json_kind(*input.mounts)));
    for (const Json& item : *input.mounts) {
      MountSpec spec = KILN_TRY(read_mount_spec(item));
      MountPoint mount = KILN_TRY(mount_from_spec(spec, true));
      KILN_TRY(add(std::move(mount), spec.target));
    }
  }
  for (const std::string& raw : input.binds) {
    MountPoint mount = KILN_TRY(mount_from_bind_string(raw));
    std::string target = mount.destination;
    KILN_TRY(add(std::move(mount), target));
  }
  for (const auto& [target, options] : input.tmpfs) {
    if (auto problem = destination_problem(target)) return Error::invalid_argument(*problem);
    MountPoint mount{.type = MountPoint::Type::kTmpfs,
                     .destination = clean_absolute_path(target),
                     .read_only = mode_has(options, "ro"),
                     .tmpfs_options = tmpfs_mount_options(options),
                     .shown = false};
    KILN_TRY(add(std::move(mount), target));
  }
  // Config.Volumes: an anonymous volume where no other mount is.
  for (const std::string& target : input.anonymous_volumes) {
    if (auto problem = destination_problem(target))
      return Error::invalid_argument(fmt::format("invalid volume specification: '{}': {}", target, *problem));
    std::string destination = clean_absolute_path(target);
    if (destinations.contains(destination)) continue;
    destinations.insert(destination);
    mounts.push_back(
        {.type = MountPoint::Type::kVolume, .destination = destination, .copy_up = true, .anonymous = true});
  }
  return mounts;
}

}  // namespace kiln::api::docker

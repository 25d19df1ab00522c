#include "engine/snapshot/manifest.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "common/unique_fd.h"

namespace kiln::engine::snapshot {
namespace {

Error malformed(std::string_view what) {
  return Error::invalid_argument(fmt::format("snapshot manifest: {}", what));
}

Result<const Json*> required_member(const Json& object, std::string_view key, Json::value_t type) {
  auto found = object.find(key);
  if (found == object.end()) return malformed(fmt::format("missing field \"{}\"", key));
  // JSON has one integer type; the parser calls non-negative ones unsigned.
  bool integer = type == Json::value_t::number_integer || type == Json::value_t::number_unsigned;
  bool matches = integer ? found->is_number_integer() : found->type() == type;
  if (!matches) return malformed(fmt::format("field \"{}\" has the wrong type", key));
  return &*found;
}

Result<uint64_t> required_unsigned(const Json& object, std::string_view key) {
  const Json* value = KILN_TRY(required_member(object, key, Json::value_t::number_unsigned));
  if (value->is_number_integer() && value->get<int64_t>() < 0)
    return malformed(fmt::format("\"{}\" is negative", key));
  return value->get<uint64_t>();
}

Result<std::string> field_string(const Json& object, std::string_view key) {
  const Json* value = KILN_TRY(required_member(object, key, Json::value_t::string));
  return value->get<std::string>();
}

Json shape_to_json(const VmShape& vm) {
  Json shares = Json::array();
  for (const auto& share : vm.shares) {
    shares.push_back({{"tag", share.tag}, {"host_path", share.host_path}, {"read_only", share.read_only}});
  }
  return {{"cpus", vm.cpus},
          {"memory_mib", vm.memory_mib},
          {"disks", vm.disks},
          {"disk_read_only", vm.disk_read_only},
          {"disk_capacity", vm.disk_capacity},
          {"root_disk", vm.root_disk},
          {"shares", shares},
          {"nics", vm.nics},
          {"kernel", vm.kernel},
          {"cmdline", vm.cmdline}};
}

Result<VmShape> shape_from_json(const Json& json) {
  VmShape vm;
  uint64_t cpus = KILN_TRY(required_unsigned(json, "cpus"));
  if (cpus == 0 || cpus > 4096) return malformed("\"cpus\" is out of range");
  vm.cpus = static_cast<unsigned>(cpus);
  vm.memory_mib = KILN_TRY(required_unsigned(json, "memory_mib"));
  const Json* disks = KILN_TRY(required_member(json, "disks", Json::value_t::array));
  for (const auto& disk : *disks) {
    if (!disk.is_string()) return malformed("\"disks\" must hold paths");
    vm.disks.push_back(disk.get<std::string>());
  }
  const Json* read_only = KILN_TRY(required_member(json, "disk_read_only", Json::value_t::array));
  for (const auto& flag : *read_only) {
    if (!flag.is_boolean()) return malformed("\"disk_read_only\" must hold booleans");
    vm.disk_read_only.push_back(flag.get<bool>());
  }
  if (vm.disk_read_only.size() != vm.disks.size())
    return malformed("\"disk_read_only\" and \"disks\" differ in length");
  const Json* capacity = KILN_TRY(required_member(json, "disk_capacity", Json::value_t::array));
  for (const auto& bytes : *capacity) {
    if (!bytes.is_number_unsigned()) return malformed("\"disk_capacity\" must hold byte counts");
    vm.disk_capacity.push_back(bytes.get<uint64_t>());
  }
  if (vm.disk_capacity.size() != vm.disks.size())
    return malformed("\"disk_capacity\" and \"disks\" differ in length");
  const Json* root_disk = KILN_TRY(required_member(json, "root_disk", Json::value_t::number_integer));
  vm.root_disk = root_disk->get<int>();
  const Json* shares = KILN_TRY(required_member(json, "shares", Json::value_t::array));
  for (const auto& share : *shares) {
    if (!share.is_object()) return malformed("\"shares\" must hold objects");
    const Json* read_only = KILN_TRY(required_member(share, "read_only", Json::value_t::boolean));
    vm.shares.push_back({.tag = KILN_TRY(field_string(share, "tag")),
                         .host_path = KILN_TRY(field_string(share, "host_path")),
                         .read_only = read_only->get<bool>()});
  }
  // Absent in manifests from before NICs existed: those VMs had none.
  if (auto nics = json.find("nics"); nics != json.end()) {
    if (!nics->is_number_unsigned()) return malformed("\"nics\" must be a count");
    vm.nics = nics->get<size_t>();
  }
  vm.kernel = KILN_TRY(field_string(json, "kernel"));
  vm.cmdline = KILN_TRY(field_string(json, "cmdline"));
  return vm;
}

template <typename T>
std::string list(const std::vector<T>& items) {
  return fmt::format("[{}]", fmt::join(items, ", "));
}

std::vector<std::string> share_names(const std::vector<ShareSpec>& shares) {
  std::vector<std::string> names;
  for (const auto& share : shares)
    names.push_back(fmt::format("{}={}{}", share.tag, share.host_path, share.read_only ? " (ro)" : ""));
  return names;
}

}  // namespace

bool VmShape::operator==(const VmShape& other) const {
  auto same_shares = [](const std::vector<ShareSpec>& a, const std::vector<ShareSpec>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const ShareSpec& x, const ShareSpec& y) {
      return x.tag == y.tag && x.host_path == y.host_path && x.read_only == y.read_only;
    });
  };
  return cpus == other.cpus && memory_mib == other.memory_mib && disks == other.disks &&
         disk_read_only == other.disk_read_only && disk_capacity == other.disk_capacity &&
         root_disk == other.root_disk && same_shares(shares, other.shares) && nics == other.nics &&
         kernel == other.kernel && cmdline == other.cmdline;
}

VmShape shape_of(const VmSpec& spec, std::string cmdline) {
  VmShape vm{.cpus = spec.cpus,
             .memory_mib = spec.memory_mib,
             .root_disk = spec.root_disk,
             .shares = spec.shares,
             .nics = spec.nics.size(),
             .kernel = spec.kernel,
             .cmdline = std::move(cmdline)};
  for (const auto& disk : spec.disks) {
    vm.disks.push_back(disk.path);
    vm.disk_read_only.push_back(disk.read_only);
    vm.disk_capacity.push_back(disk.path.empty() ? disk.placeholder_bytes : 0);
  }
  return vm;
}

Json to_json(const Manifest& manifest) {
  Json files = Json::object();
  for (const auto& [role, file] : manifest.files) {
    files[role] = {{"name", file.name}, {"bytes", file.bytes}};
    if (!file.sha256.empty()) files[role]["sha256"] = file.sha256;
  }
  Json json = {{"format", kFormat},
               {"version", manifest.version},
               {"engine", manifest.engine},
               {"engine_version", manifest.engine_version},
               {"created_at", manifest.created_at},
               {"role", manifest.role},
               {"vm", shape_to_json(manifest.vm)},
               {"files", files}};
  if (!manifest.template_key.empty()) json["template_key"] = manifest.template_key;
  return json;
}

Result<Manifest> manifest_from_json(const Json& json) {
  if (!json.is_object() || json.value("format", "") != kFormat)
    return malformed("not a kiln-snapshot manifest");
  const Json* version = KILN_TRY(required_member(json, "version", Json::value_t::number_integer));
  Manifest manifest;
  manifest.version = version->get<int>();
  // Checked before anything else: a newer format may have changed the fields below.
  if (manifest.version != kVersion) {
    return Error::failed_precondition(
        fmt::format("snapshot format version {} is not supported (this Kiln reads version {})",
                    manifest.version, kVersion));
  }
  manifest.engine = KILN_TRY(field_string(json, "engine"));
  manifest.engine_version = KILN_TRY(field_string(json, "engine_version"));
  manifest.created_at = KILN_TRY(field_string(json, "created_at"));
  manifest.role = KILN_TRY(field_string(json, "role"));
  if (manifest.role != kRoleSuspend && manifest.role != kRoleTemplate && manifest.role != kRoleSuspendMemory)
    return malformed(fmt::format("unknown role \"{}\"", manifest.role));
  manifest.template_key = json.value("template_key", "");
  const Json* vm = KILN_TRY(required_member(json, "vm", Json::value_t::object));
  manifest.vm = KILN_TRY(shape_from_json(*vm));
  const Json* files = KILN_TRY(required_member(json, "files", Json::value_t::object));
  for (const auto& [role, file] : files->items()) {
    if (!file.is_object()) return malformed(fmt::format("file \"{}\" must be an object", role));
    std::string name = KILN_TRY(field_string(file, "name"));
    // Names are relative to the snapshot's directory and stay inside it.
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      return malformed(fmt::format("file \"{}\" has a bad name", role));
    }
    std::string sha256 = file.value("sha256", "");
    if (!sha256.empty() &&
        (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos))
      return malformed(fmt::format("file \"{}\" has a bad sha256", role));
    manifest.files[role] = {.name = std::move(name),
                            .bytes = KILN_TRY(required_unsigned(file, "bytes")),
                            .sha256 = std::move(sha256)};
  }
  return manifest;
}

Result<void> write_manifest(const std::string& dir, const Manifest& manifest) {
  std::string path = fmt::format("{}/{}", dir, kManifestFile);
  KILN_TRY_CONTEXT(write_file_atomic(path, to_json(manifest).dump(2) + "\n"), "write snapshot manifest");
  // The rename into place is durable only once the directory is synced.
  UniqueFd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory || ::fsync(directory.get()) != 0) return Error::last_os_error(fmt::format("fsync {}", dir));
  return ok();
}

Result<Manifest> read_manifest(const std::string& dir) {
  std::string path = fmt::format("{}/{}", dir, kManifestFile);
  auto text = read_file(path, 1 << 20);
  if (!text) {
    if (text.error().category() == ErrorCategory::kNotFound) {
      return Error::not_found(fmt::format("{} holds no VM snapshot (no {})", dir, kManifestFile));
    }
    return text.error();
  }
  auto json = parse_json(*text);
  if (!json) return malformed(fmt::format("{} is not JSON", path));
  return KILN_TRY_CONTEXT(manifest_from_json(*json), dir);
}

Result<void> check_restorable(const Manifest& manifest, const VmSpec& spec, std::string_view engine) {
  if (manifest.role == kRoleTemplate) {
    return Error::failed_precondition(
        fmt::format("snapshot is a {}, not a suspended VM: VMs are forked from it", manifest.role));
  }
  if (manifest.role != kRoleSuspend && manifest.role != kRoleSuspendMemory) {
    return Error::failed_precondition(fmt::format(
        "snapshot has role \"{}\", which this Kiln cannot restore (it restores \"{}\" and \"{}\")",
        manifest.role, kRoleSuspend, kRoleSuspendMemory));
  }
  if (manifest.engine != engine) {
    return Error::failed_precondition(fmt::format(
        "snapshot was saved by the {} engine; it cannot be restored by {}", manifest.engine, engine));
  }
  VmShape wanted = shape_of(spec, "");
  const VmShape& saved = manifest.vm;
  std::vector<std::string> differences;
  if (saved.cpus != wanted.cpus)
    differences.push_back(fmt::format("cpus {} (saved) vs {}", saved.cpus, wanted.cpus));
  if (saved.memory_mib != wanted.memory_mib) {
    differences.push_back(
        fmt::format("memory {} MiB (saved) vs {} MiB", saved.memory_mib, wanted.memory_mib));
  }
  if (saved.disks != wanted.disks) {
    differences.push_back(fmt::format("disks {} (saved) vs {}", list(saved.disks), list(wanted.disks)));
  }
  std::vector<std::string> saved_shares = share_names(saved.shares);
  std::vector<std::string> wanted_shares = share_names(wanted.shares);
  if (saved_shares != wanted_shares) {
    differences.push_back(fmt::format("shares {} (saved) vs {}", list(saved_shares), list(wanted_shares)));
  }
  if (saved.nics != wanted.nics)
    differences.push_back(fmt::format("NICs {} (saved) vs {}", saved.nics, wanted.nics));
  if (differences.empty()) return ok();
  return Error::failed_precondition(
      fmt::format("snapshot does not match the VM's hardware (restoring onto different "
                  "hardware would corrupt the guest): {}",
                  fmt::join(differences, "; ")));
}

Result<std::string> state_file_path(const std::string& dir, const Manifest& manifest, std::string_view role) {
  auto found = manifest.files.find(std::string(role));
  if (found == manifest.files.end()) {
    return Error::failed_precondition(fmt::format("snapshot in {} lists no {} file", dir, role));
  }
  std::string path = fmt::format("{}/{}", dir, found->second.name);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error::failed_precondition(fmt::format("snapshot {} file {} is missing", role, path));
  }
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != found->second.bytes) {
    return Error::failed_precondition(
        fmt::format("snapshot {} file {} is damaged: {} bytes, the manifest says {}", role, path, st.st_size,
                    found->second.bytes));
  }
  return path;
}

}  // namespace kiln::engine::snapshot

#include "daemon/volumes/volume_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/log.h"
#include "common/random_id.h"
#include "common/rfc3339.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::daemon::volumes {
namespace {

namespace fs = std::filesystem;

// Directories of volumes being made or removed: a leading '.' is never a volume name, so these cannot
// collide with one, and open() knows them for a crash's leftovers.
constexpr std::string_view kCreatingPrefix = ".creating-";
constexpr std::string_view kRemovingPrefix = ".removing-";

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

bool alphanumeric(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

Result<void> make_directory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) return Error::last_os_error(fmt::format("mkdir {}", path));
  // The umask must not narrow what a container expects of a fresh volume (root's 0755, as dockerd's).
  if (::chmod(path.c_str(), mode) != 0) return Error::last_os_error(fmt::format("chmod {}", path));
  return ok();
}

// A rename inside `dir` survives a power cut only once the directory itself is synced.
Result<void> sync_directory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", dir));
  if (::fsync(fd.get()) != 0) return Error::last_os_error(fmt::format("fsync {}", dir));
  return ok();
}

Result<std::vector<std::string>> directory_entries(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> stream(::opendir(dir.c_str()), ::closedir);
  if (!stream) return Error::last_os_error(fmt::format("opendir {}", dir));
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(stream.get())) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  return names;
}

bool is_directory(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

std::string in_use_message(const std::string& name, const std::vector<std::string>& ids) {
  return fmt::format("remove {}: volume is in use - [{}]", name, fmt::join(ids, ", "));
}

}  // namespace

Result<void> validate_volume_name(const std::string& name) {
  if (name.size() == 1)
    return Error::invalid_argument(
        "volume name is too short, names should be at least two alphanumeric characters");
  bool valid =
      name.size() >= 2 && alphanumeric(name.front()) && std::all_of(name.begin(), name.end(), name_char);
  if (!valid) {
    return Error::invalid_argument(fmt::format(
        "\"{}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are "
        "allowed. If you intended to pass a host directory, use absolute path",
        name));
  }
  return ok();
}

Result<std::unique_ptr<VolumeManager>> VolumeManager::open(store::Database& db, std::string volumes_dir,
                                                           EventBus* events) {
  std::unique_ptr<VolumeManager> manager(new VolumeManager(db, std::move(volumes_dir), events));
  KILN_TRY(manager->recover());
  return manager;
}

Result<void> VolumeManager::recover() {
  std::error_code error;
  fs::create_directories(volumes_dir_, error);
  if (error)
    return Error::invalid_argument(fmt::format("cannot create {}: {}", volumes_dir_, error.message()));
  ::chmod(volumes_dir_.c_str(), 0711);  // as <root>: entered by path, never listed by others

  std::set<std::string> known;
  for (const VolumeRecord& volume : KILN_TRY(list())) known.insert(volume.name);
  for (const std::string& entry : KILN_TRY(directory_entries(volumes_dir_))) {
    if (known.contains(entry)) continue;
    // A create killed before its row was written, or a remove after its row was deleted: neither finished,
    // and neither has data anyone can reach by name.
    std::string path = volumes_dir_ + "/" + entry;
    if (!entry.starts_with(kCreatingPrefix) && !entry.starts_with(kRemovingPrefix))
      log::warn("removing a volume directory kiln.db does not know", {{"path", path}});
    KILN_TRY(remove_tree(path));
  }
  // A row whose directory is gone (deleted by hand, or lost with an unsynced disk): the volume gets an empty
  // directory back so that it can still be used or removed.
  for (const std::string& name : known) {
    std::string volume = volume_path(name);
    if (!is_directory(volume)) {
      log::warn("volume directory missing; recreating it empty", {{"volume", name}, {"path", volume}});
      KILN_TRY(make_directory(volume, 0755));
    }
    if (!is_directory(data_path(name))) KILN_TRY(make_directory(data_path(name), 0755));
  }
  return sync_directory(volumes_dir_);
}

std::string VolumeManager::volume_path(const std::string& name) const {
  return volumes_dir_ + "/" + name;
}

std::string VolumeManager::data_path(const std::string& name) const {
  return volume_path(name) + "/_data";
}

Result<std::optional<VolumeRecord>> VolumeManager::find(const std::string& name) {
  auto text = KILN_TRY(table_.get(name));
  if (!text) return std::optional<VolumeRecord>();
  auto json = KILN_TRY_CONTEXT(parse_json(*text), "kiln.db: volume record");
  return std::optional<VolumeRecord>(KILN_TRY(volume_from_storage_json(json)));
}

Result<VolumeRecord> VolumeManager::get(const std::string& name) {
  auto found = KILN_TRY(find(name));
  if (!found) return Error::not_found(fmt::format("get {}: no such volume", name));
  return *std::move(found);
}

Result<std::vector<VolumeRecord>> VolumeManager::list() {
  std::vector<VolumeRecord> volumes;
  for (const std::string& text : KILN_TRY(table_.list())) {
    auto json = KILN_TRY_CONTEXT(parse_json(text), "kiln.db: volume record");
    volumes.push_back(KILN_TRY(volume_from_storage_json(json)));
  }
  return volumes;
}

Result<VolumeRecord> VolumeManager::create(const CreateVolume& request) {
  VolumeRecord volume;
  {
    std::lock_guard lock(mutex_);
    volume = KILN_TRY(create_locked(request));
  }
  return volume;
}

Result<VolumeRecord> VolumeManager::create_locked(const CreateVolume& request) {
  std::string name = request.name.empty() ? KILN_TRY(random_hex_id()) : request.name;
  auto failed = [&name](const Error& error) { return error.with_context(fmt::format("create {}", name)); };
  // dockerd looks the driver up before anything else, so an unknown one fails even for an existing name.
  if (!request.driver.empty() && request.driver != "local") {
    return failed(Error::not_found(fmt::format("error looking up volume plugin {}: plugin \"{}\" not found",
                                               request.driver, request.driver)));
  }
  if (auto existing = KILN_TRY(find(name))) return *std::move(existing);
  if (auto valid = validate_volume_name(name); !valid) return failed(valid.error());
  if (!request.driver_opts.empty()) {
    std::vector<std::string> keys;
    for (const auto& [key, value] : request.driver_opts) keys.push_back(key);
    return failed(Error::invalid_argument(fmt::format(
        "driver options are not supported by Kiln's local volumes (given: {}): dockerd's type/o/device "
        "options "
        "mount a filesystem in the daemon's namespace, which kilnd does not do for containers; use a bind "
        "mount (-v /host/path:/path) for data that lives elsewhere",
        fmt::join(keys, ", "))));
  }

  VolumeRecord volume;
  volume.name = name;
  volume.driver = "local";
  volume.created_at = now_rfc3339(TimePrecision::kSeconds);
  volume.labels = request.labels;
  volume.anonymous = request.anonymous || request.name.empty();
  if (volume.anonymous) volume.labels.emplace(kAnonymousLabel, "");
  volume.options = request.driver_opts;
  volume.labels_given = request.labels_given || !volume.labels.empty();
  volume.options_given = request.driver_opts_given || !volume.options.empty();

  // Built aside and renamed into place, then the row: a kill at any point leaves either nothing, or a
  // directory without a row, which open() removes.
  std::string staging = fmt::format("{}/{}{}", volumes_dir_, kCreatingPrefix, KILN_TRY(random_hex_id(8)));
  KILN_TRY(make_directory(staging, 0755));
  auto built = make_directory(staging + "/_data", 0755);
  if (built && ::rename(staging.c_str(), volume_path(name).c_str()) != 0)
    built = Error::last_os_error(fmt::format("rename {} to {}", staging, volume_path(name)));
  if (!built) {
    (void)remove_tree(staging);
    return failed(built.error());
  }
  auto stored = sync_directory(volumes_dir_);
  if (stored) stored = table_.insert(name, name, to_storage_json(volume).dump());
  if (!stored) {
    (void)remove_tree(volume_path(name));
    return failed(stored.error());
  }
  publish("create", name, {{"driver", volume.driver}});
  return volume;
}

Result<void> VolumeManager::remove(const std::string& name, bool force) {
  std::string moved;
  {
    std::lock_guard lock(mutex_);
    auto found = KILN_TRY(find(name));
    if (!found) {
      if (force) return ok();
      return Error::not_found(fmt::format("get {}: no such volume", name));
    }
    VolumeUsers users = users_locked();
    if (auto it = users.find(name); it != users.end() && !it->second.empty())
      return Error::failed_precondition(in_use_message(name, it->second));
    moved = KILN_TRY(remove_locked(*found));
  }
  // The data may be large: deleted without the lock, under a name no create can want.
  if (auto removed = remove_tree(moved); !removed)
    log::warn("could not delete a removed volume's data",
              {{"path", moved}, {"error", removed.error().message()}});
  return ok();
}

Result<std::string> VolumeManager::remove_locked(const VolumeRecord& volume) {
  // Row first: a kill after this leaves a directory without a row, which open() removes.
  KILN_TRY(table_.remove(volume.name));
  std::string moved = fmt::format("{}/{}{}", volumes_dir_, kRemovingPrefix, KILN_TRY(random_hex_id(8)));
  if (::rename(volume_path(volume.name).c_str(), moved.c_str()) != 0 && errno != ENOENT)
    return Error::last_os_error(fmt::format("rename {} to {}", volume_path(volume.name), moved));
  publish("destroy", volume.name, {{"driver", volume.driver}});
  return moved;
}

void VolumeManager::set_users(std::function<VolumeUsers()> volume_to_container_ids) {
  std::lock_guard lock(mutex_);
  users_ = std::move(volume_to_container_ids);
}

VolumeUsers VolumeManager::users() const {
  std::lock_guard lock(mutex_);
  return users_locked();
}

VolumeUsers VolumeManager::users_locked() const {
  VolumeUsers users = users_ ? users_() : VolumeUsers();
  for (const auto& [name, ids] : holds_) {
    std::vector<std::string>& listed = users[name];
    for (const std::string& id : ids) {
      if (std::find(listed.begin(), listed.end(), id) == listed.end()) listed.push_back(id);
    }
  }
  return users;
}

void VolumeManager::hold(const std::string& name, const std::string& container_id) {
  std::lock_guard lock(mutex_);
  holds_[name].insert(container_id);
}

void VolumeManager::release(const std::string& name, const std::string& container_id) {
  std::lock_guard lock(mutex_);
  auto it = holds_.find(name);
  if (it == holds_.end()) return;
  it->second.erase(container_id);
  if (it->second.empty()) holds_.erase(it);
}

Result<int64_t> VolumeManager::size(const std::string& name) const {
  std::string root = data_path(name);
  if (!is_directory(root)) return int64_t{0};
  int64_t total = 0;
  std::set<std::pair<dev_t, ino_t>> seen;
  std::error_code error;
  // Entries may come and go while a container writes: what vanishes is skipped, not an error.
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, error);
  if (error) return Error::from_errno(fmt::format("read {}", root), error.value());
  for (; it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (error) {
      error.clear();
      continue;
    }
    struct stat info {};
    if (::lstat(it->path().c_str(), &info) != 0 || S_ISDIR(info.st_mode) || info.st_size == 0) continue;
    if (seen.emplace(info.st_dev, info.st_ino).second) total += info.st_size;
  }
  return total;
}

Result<PruneReport> VolumeManager::prune(const std::function<bool(const VolumeRecord&)>& selected) {
  PruneReport report;
  std::vector<std::string> moved;
  {
    std::lock_guard lock(mutex_);
    VolumeUsers users = users_locked();
    for (const VolumeRecord& volume : KILN_TRY(list())) {
      if (auto it = users.find(volume.name); it != users.end() && !it->second.empty()) continue;
      // dockerd leaves volumes with mount options alone: their data is not here to reclaim.
      if (!volume.options.empty() || !selected(volume)) continue;
      int64_t bytes = size(volume.name).value_or(0);
      auto removed = remove_locked(volume);
      if (!removed) {
        log::warn("prune: could not remove a volume",
                  {{"volume", volume.name}, {"error", removed.error().message()}});
        continue;
      }
      moved.push_back(*removed);
      report.removed.push_back(volume.name);
      report.space_reclaimed += static_cast<uint64_t>(bytes);
    }
  }
  for (const std::string& path : moved) {
    if (auto removed = remove_tree(path); !removed)
      log::warn("could not delete a pruned volume's data",
                {{"path", path}, {"error", removed.error().message()}});
  }
  publish("prune", "", {{"reclaimed", std::to_string(report.space_reclaimed)}});
  return report;
}

void VolumeManager::publish(std::string action, std::string id, Json attributes) {
  if (events_ == nullptr) return;
  events_->publish({.type = "volume",
                    .action = std::move(action),
                    .id = std::move(id),
                    .attributes = std::move(attributes)});
}

}  // namespace kiln::daemon::volumes

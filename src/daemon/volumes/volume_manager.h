// VolumeManager: Docker named volumes. Each is a host directory <volumes_dir>/<name>/_data (dockerd's local
// driver's layout) with a row in kiln.db's volumes table; containers' VMs get the directory over virtio-9p,
// so two running containers can share one volume. Create and remove keep the directory and the row in step
// across a kill -9 at any moment: a directory is built under a temporary name and renamed into place before
// its row is written, and a removal deletes the row before the directory; open() clears whatever a crash
// left. Names, messages and error kinds are dockerd 20.10's (volume/local, volume/service).
// Thread-safe: HTTP connection threads and the container manager call in directly. Creates and removes are
// serialized by one lock, held while the users function runs (see set_users).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "daemon/event_bus.h"
#include "daemon/state/document_table.h"
#include "daemon/volumes/volume_record.h"
#include "store/database.h"

namespace kiln::daemon::volumes {

struct CreateVolume {
  std::string name;    // empty: 64 random hex digits, and the volume is anonymous
  std::string driver;  // "" or "local"
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> driver_opts;  // refused unless empty: Kiln mounts nothing on the host
  bool anonymous = false;                          // made for a container (image VOLUME, `-v /path`)
  // The request had Labels / DriverOpts, perhaps empty ({} rather than null): inspect shows them as given.
  bool labels_given = false;
  bool driver_opts_given = false;
};

// Which containers use which volume: volume name -> container ids.
using VolumeUsers = std::map<std::string, std::vector<std::string>>;

struct PruneReport {
  std::vector<std::string> removed;  // names, in the order removed
  uint64_t space_reclaimed = 0;      // bytes, as size() counted them
};

class VolumeManager {
 public:
  // Creates `volumes_dir` if missing and clears what a crash left there (temporary directories, directories
  // without a row; a row whose directory is gone gets an empty one back). `events`, when given, gets
  // dockerd's volume events (create, destroy, prune) and must outlive the manager.
  static Result<std::unique_ptr<VolumeManager>> open(store::Database& db, std::string volumes_dir,
                                                     EventBus* events = nullptr);

  // A new volume, or the existing one of that name (as dockerd: its labels and options stay as they were).
  // kInvalidArgument for a bad name or any driver option, kNotFound for a driver other than "local".
  Result<VolumeRecord> create(const CreateVolume& request);
  // kNotFound "get NAME: no such volume".
  Result<VolumeRecord> get(const std::string& name);
  // <volumes_dir>/<name>/_data: what a container mounts. No check that the volume exists.
  std::string data_path(const std::string& name) const;
  // <volumes_dir>/<name>.
  std::string volume_path(const std::string& name) const;
  // kFailedPrecondition (HTTP 409) "remove NAME: volume is in use - [ids]" while a container uses it, force
  // or not; kNotFound for a missing volume unless `force`.
  Result<void> remove(const std::string& name, bool force);
  // Oldest first.
  Result<std::vector<VolumeRecord>> list();

  // Who uses which volume: volume names referenced by any container, running or not. Used by remove (409),
  // prune, the "dangling" filter and UsageData.RefCount. Called with this manager's lock held, so that no
  // create or remove of a volume slips between the check and the removal: it must not call back into this
  // manager, nor wait for a lock that a caller of this manager holds (reading kiln.db is fine).
  void set_users(std::function<VolumeUsers()> volume_to_container_ids);
  // What the registered function says now, plus the holds below ({} when there are none).
  VolumeUsers users() const;

  // Counts `container_id` as a user of volume `name` until release(), on top of what the users function
  // says: for a container being created, from its volumes' create() until its record is where the users
  // function reads, so that a `docker volume rm` in between gets the 409 (dockerd's CreateWithRef). Holding
  // the same pair twice is one hold.
  void hold(const std::string& name, const std::string& container_id);
  void release(const std::string& name, const std::string& container_id);

  // The bytes of the files under _data, each inode once, symlinks not followed (dockerd's directory.Size).
  // 0 for a missing directory.
  Result<int64_t> size(const std::string& name) const;

  // Removes every volume that no container uses and `selected` accepts, each as remove() does; reports what
  // went and the bytes it held. Publishes dockerd's "prune" event.
  Result<PruneReport> prune(const std::function<bool(const VolumeRecord&)>& selected);

 private:
  VolumeManager(store::Database& db, std::string volumes_dir, EventBus* events)
      : table_(db, "volumes", "volume"), volumes_dir_(std::move(volumes_dir)), events_(events) {}
  Result<void> recover();
  Result<std::optional<VolumeRecord>> find(const std::string& name);
  Result<VolumeRecord> create_locked(const CreateVolume& request);
  // Deletes the row and moves the directory aside; returns the moved directory's path for the caller to
  // delete once the lock is released.
  Result<std::string> remove_locked(const VolumeRecord& volume);
  VolumeUsers users_locked() const;
  void publish(std::string action, std::string id, Json attributes);

  DocumentTable table_;  // id and name are both the volume's name
  std::string volumes_dir_;
  EventBus* events_;
  mutable std::mutex mutex_;  // creates, removes, and users_
  std::function<VolumeUsers()> users_;
  std::map<std::string, std::set<std::string>> holds_;  // volume name -> container ids
};

// dockerd's local driver's rule, with its messages: at least two characters of [a-zA-Z0-9_.-], the first
// alphanumeric (so "." and ".." can never be names, nor can anything with a "/").
Result<void> validate_volume_name(const std::string& name);

}  // namespace kiln::daemon::volumes

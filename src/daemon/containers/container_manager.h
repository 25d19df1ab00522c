// ContainerManager: kilnd's Docker containers, each running in its own VM. Owns the container records
// (kiln.db, beside the VMs), a lock per container, the main process's stdio relay and logs, exec records and
// the restart supervisor; drives the VMs through VmManager, as their owner. The Docker API routes
// (src/api/docker) only translate HTTP into these calls.
//
// Locking: a container's lock is taken before any VM lock (VmManager's slots), never the other way round;
// the main process's exit is handled on its relay thread, which takes the container lock itself, so an
// operation that waits for an exit (stop, kill, rm -f) waits without holding it. Thread-safe: HTTP
// connection threads call in directly.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "daemon/containers/container_io.h"
#include "daemon/containers/container_record.h"
#include "daemon/containers/container_store.h"
#include "daemon/containers/json_file_log.h"
#include "daemon/event_bus.h"
#include "daemon/networks/container_networking.h"
#include "daemon/vm_manager.h"
#include "daemon/volumes/volume_manager.h"

namespace kiln::image {
class ImageStore;
}

namespace kiln::daemon::containers {

struct ContainerManagerConfig {
  std::string root;  // --root: containers/<id>/ holds the logs
  uint64_t default_memory_mib =
      512;  // a container's VM without -m (memfd-backed: untouched pages cost nothing)
  unsigned default_cpus = 1;
  std::chrono::milliseconds vm_stop_grace = std::chrono::seconds(10);
  // Where a guest reaches the host (the outbound NAT's gateway): what --add-host NAME:host-gateway names.
  std::string host_gateway_ip;
};

// What `docker create` asks for; see api/docker/container_json.h for where it comes from.
struct NewContainer {
  std::string name;  // empty: generated
  ContainerConfig config;
  HostConfig host_config;
  Json raw_config = Json::object();
  Json raw_host_config = Json::object();
  Json raw_networking_config = Json::object();
  std::vector<NetworkEndpointConfig> networks;  // see ContainerRecord::networks
  std::vector<PortPublication> ports;           // see ContainerRecord::ports
  // Whether the client set Entrypoint and Cmd at all (null and absent differ from [] for the image merge).
  bool entrypoint_given = false;
  bool cmd_given = false;
};

enum class WaitCondition { kNotRunning, kNextExit, kRemoved };

struct AttachOptions {
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
  bool logs = false;        // replay the logs first
  bool stream = false;      // then follow the live output
  std::string detach_keys;  // the byte sequence (parse_detach_keys); empty: Docker's default ctrl-p,ctrl-q
};

struct ExecConfig {
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // added to the container's
  std::string user;              // empty: the container's
  std::string working_dir;       // empty: the container's
  bool tty = false;
  bool attach_stdin = false;
  bool attach_stdout = true;
  bool attach_stderr = true;
  bool privileged = false;
  uint16_t console_rows = 0;
  uint16_t console_cols = 0;
};

struct ExecRecord {
  std::string id;
  std::string container_id;
  ExecConfig config;
  bool running = false;
  bool started = false;
  std::optional<int> exit_code;
  int64_t pid = 0;
  std::optional<agent::ExecHandle> handle;  // once started
};

// docker top: ps -ef's columns for each process of the container.
struct ContainerTop {
  std::vector<std::string> titles;
  std::vector<std::vector<std::string>> processes;
};

// docker stats: one sample.
struct ContainerStats {
  std::chrono::system_clock::time_point read;
  uint64_t cpu_user_ns = 0;  // the VM monitor's CPU time (its vCPU threads included)
  uint64_t cpu_kernel_ns = 0;
  uint64_t system_cpu_ns = 0;  // the host's, for the percentage
  unsigned online_cpus = 1;
  uint64_t memory_usage_bytes = 0;  // in use in the guest (MemTotal - MemAvailable)
  uint64_t memory_limit_bytes = 0;  // the VM's memory
  uint64_t pids = 0;
};

// One entry of `docker diff` (GET /containers/{id}/changes).
struct ContainerChange {
  enum class Kind { kModified = 0, kAdded = 1, kDeleted = 2 };
  std::string path;
  Kind kind = Kind::kModified;
};

// Where a file operation's archive goes (GET archive, export): false stops the transfer (the client left).
using ArchiveSink = std::function<bool(std::string_view data)>;
// Where PUT archive's tar comes from: bytes read, 0 at its end.
using ArchiveSource = std::function<Result<size_t>(char* buffer, size_t size)>;

// docker commit (POST /commit): where the new image goes and how its configuration differs.
struct CommitOptions {
  std::string repo;     // empty: an untagged image
  std::string tag;      // empty: "latest"
  std::string comment;  // the history entry's
  std::string author;
  std::vector<std::string>
      changes;                   // Dockerfile instructions: CMD, ENTRYPOINT, ENV, LABEL, USER, WORKDIR, ...
  Json config = Json::object();  // the request body: Config fields over the container's
};

class ContainerFiles;

class ContainerManager {
 public:
  static Result<std::unique_ptr<ContainerManager>> create(ContainerManagerConfig config, store::Database& db,
                                                          VmManager& vms, image::ImageStore& images,
                                                          volumes::VolumeManager& volumes, EventBus& events);
  ~ContainerManager();
  ContainerManager(const ContainerManager&) = delete;
  ContainerManager& operator=(const ContainerManager&) = delete;

  // At kilnd start, after VmManager::recover(): containers whose process did not survive are recorded as
  // exited; restart policies apply.
  Result<void> recover();
  // kilnd is stopping: no exit is recorded from now on and attached clients are let go. The containers run
  // on; VmManager::shutdown() then releases their VMs (their relays end as the agent channels close), and
  // join() waits for the relay and restart threads.
  void shutdown();
  void join();

  // kInvalidArgument for a link to a container that does not exist (dockerd's words).
  Result<ContainerRecord> create(NewContainer request);
  Result<ContainerRecord> inspect(const std::string& reference);
  Result<std::vector<ContainerRecord>> list();
  // false when it was already running (HTTP 304).
  Result<bool> start(const std::string& reference);
  // false when it was not running (HTTP 304). `timeout`: seconds before SIGKILL (nullopt: the container's
  // StopTimeout, else 10; negative: wait for ever); `signal`: overrides the StopSignal.
  Result<bool> stop(const std::string& reference, std::optional<int> timeout, std::optional<int> signal);
  Result<void> kill(const std::string& reference, int signal);
  Result<void> restart(const std::string& reference, std::optional<int> timeout);
  // remove_volumes (`docker rm -v`): its anonymous volumes go too.
  Result<void> remove(const std::string& reference, bool force, bool remove_volumes = false);
  Result<void> rename(const std::string& reference, const std::string& new_name);
  // docker rm --link PARENT/ALIAS: PARENT forgets that legacy link (its next start has no ALIAS); both
  // containers stay. kNotFound "No such container: PARENT/ALIAS"; a plain container name is dockerd's
  // "Conflict, cannot remove the default link name of the container".
  Result<void> remove_link(const std::string& link_name);
  // docker update: the restart policy at any time; memory and vCPUs (the VM's size) only while the
  // container is not running, since a running VM keeps its size. `raw` (the request body's fields) is
  // recorded into the HostConfig inspect shows.
  Result<void> update(const std::string& reference, const HostConfig& host_config, const Json& raw);
  // docker network connect/disconnect: `change` edits the container's record under the container's lock
  // (it refuses what the container's state does not allow); a running container's VM then joins or leaves
  // the networks (VmManager::set_networking), and the record is saved when both succeed.
  Result<ContainerRecord> change_networks(const std::string& reference,
                                          const std::function<Result<void>(ContainerRecord&)>& change);
  Result<void> pause(const std::string& reference);
  Result<void> unpause(const std::string& reference);
  Result<void> resize(const std::string& reference, uint16_t rows, uint16_t cols);
  // Blocks until the condition holds; returns the exit code. `cancelled` is polled (the client went away).
  Result<int> wait(const std::string& reference, WaitCondition condition,
                   const std::function<bool()>& cancelled);

  // Checks an attach can go ahead (before the HTTP hijack): kNotFound, or kFailedPrecondition for a stopped
  // container with `stream` ("You cannot attach to a stopped container, start it first").
  Result<ContainerRecord> check_attach(const std::string& reference, const AttachOptions& options);
  // Runs an attach on the hijacked connection until the run ends, the client detaches or goes away.
  void attach(const std::string& id, UniqueFd client, std::string already_read, const AttachOptions& options);

  Result<ContainerTop> top(const std::string& reference);
  Result<ContainerStats> stats(const std::string& reference);

  std::string log_path(const std::string& id) const;
  // docker logs: reads the container's json-file log; with `follow`, until its run ends or `should_stop`.
  Result<void> read_logs(const std::string& id, const LogReadOptions& options,
                         const std::function<bool()>& should_stop,
                         const std::function<bool(const LogEntry&)>& deliver);

  Result<std::string> exec_create(const std::string& reference, ExecConfig config);
  Result<ExecRecord> exec_inspect(const std::string& exec_id);
  // Detached when `client` is invalid. Returns once the process ended (attached) or started (detached).
  Result<void> exec_start(const std::string& exec_id, UniqueFd client, std::string already_read);
  Result<void> exec_resize(const std::string& exec_id, uint16_t rows, uint16_t cols);

  // The container's filesystem (container_files.cc): the agent's file builtins in its VM. A stopped or
  // never-started container's VM is started for the operation (without the container's process) and stopped
  // after it, under the container's lock, so `docker start` waits (a running container's lock is not held).
  // The returned object holds that; use it and destroy it on one thread.
  Result<std::unique_ptr<ContainerFiles>> open_files(const std::string& reference);
  // docker commit: the container's writable layer as a new image layer over its image; the image ID. A
  // running container is read as it runs (Kiln cannot freeze its processes without freezing the agent).
  Result<std::string> commit(const std::string& reference, const CommitOptions& options);

 private:
  struct Runtime;
  friend class ContainerFiles;
  ContainerManager(ContainerManagerConfig config, store::Database& db, VmManager& vms,
                   image::ImageStore& images, volumes::VolumeManager& volumes, EventBus& events);

  std::shared_ptr<Runtime> runtime(const std::string& id);
  Result<ContainerRecord> load(Runtime& runtime, const std::string& id);  // under the container's lock
  // A legacy link's container as a start needs it; nullopt once it is removed. kFailedPrecondition in
  // dockerd's words when it does not run on the default network.
  Result<std::optional<networks::LinkedContainer>> linked_container(const ContainerRecord& container,
                                                                    const ContainerLink& link);
  // Its VM's NIC on a network (by id, else name) while it runs or is paused.
  std::optional<VmNic> running_nic(const ContainerRecord& container, const std::string& network_id,
                                   const std::string& network_name);
  // Links' names to ids (dockerd's registerLinks, default network only).
  Result<void> resolve_links(HostConfig& host_config);
  Result<void> save(ContainerRecord& container);
  void publish(const ContainerRecord& container, std::string action, Json attributes = Json::object());
  // Runs `argv` in the container's VM (outside the container, as root) and returns its stdout.
  Result<std::string> run_in_vm(const ContainerRecord& container, std::vector<std::string> argv);
  Result<void> merge_image_config(NewContainer& request, const std::string& image_id,
                                  const Json& image_config);

  // The container start path: its VM up with the root assembled, the main process running, the relay
  // reading its output. One function, so a VM fork can replace the boot.
  // `vm_failed`: set when the VM (its networks, ports or monitor) failed to start, before any process: the
  // error is then the start's reason as it stands, not a process's exec failure.
  Result<void> launch(Runtime& runtime, ContainerRecord& container, bool& vm_failed);
  Result<void> start_locked(Runtime& runtime, ContainerRecord& container);
  // The host side of one run's stdio: the log (open for append; null with log driver "none") and the relay's
  // socket, whose other end (in `io`) the agent hub bridges to the main process.
  struct RunIo {
    std::shared_ptr<JsonFileLogWriter> log;
    std::shared_ptr<UniqueFd> relay_end;
    agent::ExecIo io;
  };
  Result<RunIo> open_run_io(const ContainerRecord& container);
  // A run begins with `handle` as its main process: the runtime takes it and a relay thread pumps its
  // output into the log and attached clients until it exits. For a start and for a takeover at recovery.
  void run_relay(Runtime& runtime, const ContainerRecord& container, agent::ExecHandle handle,
                 std::shared_ptr<UniqueFd> relay_end, std::shared_ptr<JsonFileLogWriter> log);
  // At recovery: takes over the main process the agent kept running; false when there is none to take.
  bool take_over(Runtime& runtime, ContainerRecord& container);
  // The main process of run `run` ended with `status` (an error: the agent was lost).
  void on_main_exit(const std::string& id, uint64_t run, const Result<ExitStatus>& status);
  void schedule_restart(const std::string& id, uint64_t run, std::chrono::milliseconds delay);
  // Signals the main process and waits for its exit to be handled; SIGKILL after `timeout`.
  Result<void> stop_process(Runtime& runtime, const std::string& id, int signal,
                            std::chrono::milliseconds timeout);
  // remove_volumes: the container's anonymous volumes too (docker rm -v, --rm).
  Result<void> remove_locked(Runtime& runtime, ContainerRecord& container, bool remove_volumes);
  // Gives every volume mount of `container` its volume: a named one is created if missing, an anonymous one
  // made and named; each mount's source becomes its data directory. `made` gets the volumes this created.
  Result<void> attach_volumes(ContainerRecord& container, std::vector<std::string>& made);
  // Which containers use which volume (for VolumeManager: rm, prune, RefCount).
  volumes::VolumeUsers volume_users();
  uint64_t exits_seen(Runtime& runtime);
  // Waits until the runtime saw more than `exits` exits, or `timeout` passed; true if it did.
  bool wait_for_exit_after(Runtime& runtime, uint64_t exits, std::chrono::milliseconds timeout,
                           const std::function<bool()>& cancelled = {});

  ContainerManagerConfig config_;
  ContainerStore store_;
  VmManager& vms_;
  image::ImageStore& images_;
  volumes::VolumeManager& volumes_;
  EventBus& events_;

  std::mutex runtimes_mutex_;
  std::map<std::string, std::shared_ptr<Runtime>> runtimes_;
  std::mutex names_mutex_;  // generated names: pick and insert as one step
  std::mt19937_64 random_;

  std::mutex execs_mutex_;
  std::condition_variable execs_changed_;  // an exec got its handle or its exit code
  std::map<std::string, ExecRecord> execs_;

  // Relay and restart threads are detached; shutdown() waits for them to notice stopping_.
  std::atomic<bool> stopping_{false};
  std::mutex threads_mutex_;
  std::condition_variable threads_done_;
  int threads_ = 0;
};

// A container's filesystem held open for file operations (see ContainerManager::open_files). Errors are
// dockerd's: a missing path is kNotFound "Could not find the file PATH in container NAME".
class ContainerFiles {
 public:
  ~ContainerFiles();
  ContainerFiles(const ContainerFiles&) = delete;
  ContainerFiles& operator=(const ContainerFiles&) = delete;

  // X-Docker-Container-Path-Stat's JSON: {"name","size","mode","mtime","linkTarget"}.
  Result<std::string> stat(const std::string& path);
  // A tar of `path` (GET archive); call stat() first for dockerd's 404.
  Result<void> get_archive(const std::string& path, const ArchiveSink& sink);
  // Extracts the tar into the directory `path` (PUT archive). copy_uid_gid: files belong to the container's
  // user instead of the archive's owners.
  Result<void> put_archive(const std::string& path, bool no_overwrite_dir_non_dir, bool copy_uid_gid,
                           const ArchiveSource& source);
  Result<void> export_root(const ArchiveSink& sink);
  // The overlay's upper directory as an image layer tar (OCI whiteouts).
  Result<void> layer(const ArchiveSink& sink);
  Result<std::vector<ContainerChange>> changes();

 private:
  friend class ContainerManager;
  ContainerFiles(ContainerManager& manager, std::string reference)
      : manager_(manager), reference_(std::move(reference)) {}
  Result<void> run(const std::string& builtin, std::vector<std::string> args, std::string root,
                   const ArchiveSource* source, const ArchiveSink& sink, const std::string& path);

  ContainerManager& manager_;
  std::string reference_;  // as the client named it, for messages
  ContainerRecord container_;
  std::shared_ptr<ContainerManager::Runtime> runtime_;
  std::unique_lock<std::mutex> lock_;
  bool started_vm_ = false;
};

}  // namespace kiln::daemon::containers

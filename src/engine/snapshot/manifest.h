// The snapshot manifest (snapshot.json): the engine-neutral, versioned description of a VM saved to disk by
// VmInstance::save_state — which engine wrote it, the hardware the guest was running on, and the state
// files beside it. Restoring checks the manifest against the new VmSpec first, because restoring a guest
// onto different hardware (CPUs, RAM size, disks) corrupts it. Plain data and pure functions; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "engine/engine.h"

namespace kiln::engine::snapshot {

inline constexpr std::string_view kManifestFile = "snapshot.json";
inline constexpr std::string_view kFormat = "kiln-snapshot";
// Bump when a field changes meaning or a reader would misread a newer manifest; readers refuse others.
// 2: "role" (a suspended VM or a fork template), "template_key", per-disk read-only flags, file hashes.
inline constexpr int kVersion = 2;

// What a snapshot is for.
inline constexpr std::string_view kRoleSuspend = "suspend";    // one VM, saved to be restored once
inline constexpr std::string_view kRoleTemplate = "template";  // a booted guest that VMs are forked from
// One VM saved by Engine::suspend_running: device state without RAM, and its RAM in a memory file that the
// restore maps private instead of streaming it in.
inline constexpr std::string_view kRoleSuspendMemory = "suspend-memory";

// The VM's hardware as the guest saw it, plus where it booted from (informational after boot).
struct VmShape {
  unsigned cpus = 0;
  uint64_t memory_mib = 0;
  std::vector<std::string> disks;  // host paths, in slot order (disk i is kiln-disk<i>); "" for a placeholder
  std::vector<bool> disk_read_only;  // per slot: the guest caches it at boot
  // Per slot, the size the guest saw at boot (a placeholder's); 0: not recorded (a suspend's real disks).
  std::vector<uint64_t> disk_capacity;
  int root_disk = -1;
  std::vector<ShareSpec> shares;
  size_t nics = 0;  // virtio-net devices (their taps are the VM's own, not part of the snapshot)
  std::string kernel;
  std::string cmdline;  // the kernel command line the guest booted with

  bool operator==(const VmShape&) const;
};

// One file of the snapshot, named relative to its directory. `bytes` catches a truncated copy.
struct SnapshotFile {
  std::string name;
  uint64_t bytes = 0;
  std::string sha256;  // hex; may be empty (a suspend's state file is checked by size only)
  bool operator==(const SnapshotFile&) const = default;
};

struct Manifest {
  int version = kVersion;
  std::string engine;          // "qemu"
  std::string engine_version;  // e.g. "7.2.22"
  std::string created_at;      // RFC 3339, UTC
  std::string role = std::string(kRoleSuspend);
  std::string template_key;  // role template: Engine::template_key of the spec it was built from
  VmShape vm;
  std::map<std::string, SnapshotFile> files;  // by role, e.g. "state" -> state.qemu

  bool operator==(const Manifest&) const = default;
};

VmShape shape_of(const VmSpec& spec, std::string cmdline);

Json to_json(const Manifest& manifest);
// kInvalidArgument when it is not a Kiln snapshot manifest or a field is missing or mistyped;
// kFailedPrecondition when it is one of a format version this build does not read.
Result<Manifest> manifest_from_json(const Json& json);

// Writes DIR/snapshot.json atomically (fsynced); the manifest is written last, so its presence marks a
// complete snapshot.
Result<void> write_manifest(const std::string& dir, const Manifest& manifest);
// kNotFound when DIR has no snapshot.json.
Result<Manifest> read_manifest(const std::string& dir);

// Whether `manifest` can be restored by `engine` into a VM launched from `spec`: a suspended VM (role
// suspend or suspend-memory), the same engine and the same CPUs, memory, disks and shares.
// kFailedPrecondition naming the role, or every difference, otherwise.
Result<void> check_restorable(const Manifest& manifest, const VmSpec& spec, std::string_view engine);

// The path of the file with `role`, checked to exist with the size the manifest recorded.
// kFailedPrecondition when it is missing from the manifest, absent, or of another size (a truncated copy).
Result<std::string> state_file_path(const std::string& dir, const Manifest& manifest, std::string_view role);

}  // namespace kiln::engine::snapshot

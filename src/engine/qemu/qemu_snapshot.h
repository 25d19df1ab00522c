// Suspend to disk for QEMU VMs. The state travels as QEMU's migration stream: `stop`, then QMP `migrate`
// into a file descriptor handed over with getfd (no shell, no helper process), and back with -incoming
// defer + `migrate-incoming`. The stream is QEMU's own format, valid for the same QEMU and the same command
// line; snapshot.json (snapshot/manifest.h) records both. The disks are not copied: the guest's page cache
// is in the saved memory, so a disk modified while the VM is suspended corrupts its filesystem on restore.
// A VM with a mounted 9p share cannot be saved (QEMU blocks migration while a virtio-9p export is mounted).
// Called on the thread that owns the VM.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"
#include "engine/monitor_process.h"
#include "engine/qemu/qmp.h"
#include "engine/snapshot/manifest.h"

namespace kiln::engine::qemu {

inline constexpr std::string_view kEngineName = "qemu";
inline constexpr std::string_view kStateRole = "state";
inline constexpr std::string_view kStateFileName = "state.qemu";
inline constexpr std::string_view kMemoryRole = "memory";
inline constexpr std::string_view kMemoryFileName = "memory";

// Saves the VM into `dir` (existing and empty) and ends QEMU. `shape` is what the manifest records. On an
// error before the state is complete the VM is resumed if it was running, and the partial file removed.
Result<void> save_vm_state(QmpClient& qmp, MonitorProcess& monitor, const snapshot::VmShape& shape,
                           const std::string& dir);

// Saves a template: the VM's RAM is already in DIR/memory (memory-backend-file, share=on), so the stream
// leaves it out (x-ignore-shared) and holds only device state. Ends QEMU, then records the memory file's
// size and hash in the manifest (role template, `key`).
Result<void> save_template_state(QmpClient& qmp, MonitorProcess& monitor, const snapshot::VmShape& shape,
                                 const std::string& key, const std::string& dir);

// What save_running makes of a running VM, and what becomes of the VM afterwards.
struct RunningSave {
  // Instant clone: a one-off template named `key` (kRoleTemplate), and the guest resumes. Suspend:
  // kRoleSuspendMemory, the memory file is made durable, and QEMU ends once the manifest is written.
  std::string_view role = snapshot::kRoleTemplate;
  std::string key;
  bool end_monitor = false;
};

// Saves a running VM whose RAM is a shared memfd into `dir` (existing, empty): stops the guest, calls
// `while_paused`, saves the device state with x-ignore-shared (the memfd is a shared block, so its RAM stays
// out of the stream), copies the RAM from the memfd `ram` into DIR/memory (sparse, no hash: size-checked
// like a suspend's state file), writes the manifest (`how`), then ends QEMU (`how.end_monitor`) or resumes
// the guest if it was running. On a failure before the manifest is written the guest is resumed if it was
// running (`cont` also leaves QEMU's postmigrate state) and QEMU keeps running.
Result<void> save_running(QmpClient& qmp, MonitorProcess& monitor, const snapshot::VmShape& shape,
                          const RunningSave& how, const std::string& dir, int ram,
                          const std::function<Result<void>()>& while_paused);

// A snapshot checked against the VmSpec it is to be restored into, with its state file open.
struct PreparedRestore {
  snapshot::Manifest manifest;
  UniqueFd state_file;
  bool ignore_shared = false;  // a template's stream: the RAM comes from the mapped memory file
  // A suspend-memory snapshot: the memory file the restored VM maps private (ignore_shared is set).
  std::string memory_path;
};
Result<PreparedRestore> prepare_restore(const VmSpec& spec);
// A template's device state, for a fork (its layout was checked by the engine).
Result<PreparedRestore> prepare_fork(const std::string& template_dir);
// A template's manifest, checked: role, engine, its files present with their recorded sizes.
Result<snapshot::Manifest> read_template_manifest(const std::string& dir);

// Loads the prepared state into a QEMU started with -incoming defer and resumes the guest. On an error QEMU
// may have exited (7.2 exits when loading fails; its log says why); the caller kills it either way.
Result<void> load_vm_state(QmpClient& qmp, MonitorProcess& monitor, PreparedRestore restore);

}  // namespace kiln::engine::qemu

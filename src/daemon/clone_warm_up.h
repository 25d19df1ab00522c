// A warm pool clone's warm-up (docs/fork.md, "The warm pool"): before a clone waits in the pool it runs one
// trusted container workload on scratch disks, the way a container start does (CLONE_INIT's mounts, a
// container process in the overlay root, its exit), then unmounts it all and gets its placeholders back.
// Under TCG, a new QEMU translates the guest kernel's code afresh, and the mount, overlay, exec and namespace
// paths are most of a fresh clone's start (docs/benchmarks.md); after the warm-up they are translated. The
// guest keeps nothing of the workload: the disks are placeholders again, and the agent flushes a disk's
// buffers before it mounts the real one.
#pragma once

#include <mutex>
#include <string>

#include "agent/client/agent_hub.h"
#include "common/error.h"
#include "engine/engine.h"

namespace kiln::daemon {

class CloneWarmUp {
 public:
  // The scratch disks go in `dir`, made at the first run (its old contents go): a small EROFS holding
  // `busybox` as /bin/true and /bin/sh, and a writable layer as a container's. Thread-safe.
  CloneWarmUp(std::string dir, std::string busybox) : dir_(std::move(dir)), busybox_(std::move(busybox)) {}

  // Runs the workload in a container VM's clone (`spec`: its shape) whose disk slots 0 (image) and 1 (layer)
  // hold placeholders, and leaves them holding placeholders again. A clone that fails it is not fit to be
  // handed out. Other shapes (not a container's disk layout) are left as they are, and so is every clone when
  // the scratch disks cannot be made: false, nothing done.
  Result<bool> run(const engine::VmSpec& spec, engine::VmInstance& vm, agent::AgentHub& hub);

 private:
  Result<void> prepare();

  const std::string dir_;
  const std::string busybox_;
  std::mutex mutex_;  // held by a run: one warm-up at a time uses the scratch layer
  bool prepared_ = false;
  bool unavailable_ = false;  // prepare failed: runs do nothing
  std::string image_;         // EROFS
  std::string layer_;         // ext4 with the overlay's upper and work directories
};

}  // namespace kiln::daemon

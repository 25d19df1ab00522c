// VmManager's per-VM runtime state, shared by its implementation files (not part of its interface).
// A Slot's lock serializes every operation on that VM; `running` is set while kilnd holds the VM's monitor.
#pragma once

#include <memory>
#include <mutex>

#include "agent/client/agent_hub.h"
#include "daemon/vm_manager.h"
#include "engine/engine.h"

namespace kiln::daemon {

struct VmManager::RunningVm {
  std::unique_ptr<engine::VmInstance> instance;
  std::unique_ptr<agent::AgentHub> hub;  // null while the agent is unreachable (e.g. adopted while paused)
};

struct VmManager::Slot {
  std::mutex lock;
  std::unique_ptr<RunningVm> running;
};

// What the guest agent is told about one NIC: its MAC, address and gateway, and the device MAC of its slot
// (engine::nic_device_mac) by which the guest finds its interface. No name servers, no route choice: the
// callers add those.
agent::InterfaceConfig guest_interface(const VmNic& nic);

// The mounts that assemble a container VM's root in the guest (the image's EROFS, the writable layer, the
// overlay at kContainerRootInGuest), then the container's own mounts inside it, parents first.
std::vector<agent::MountRequest> container_root_mounts(const VmRecord& vm);

// kFailedPrecondition naming the container when `vm` belongs to one and the caller is not that owner.
Result<void> check_owner(const VmRecord& vm, std::string_view as_owner, std::string_view operation);

}  // namespace kiln::daemon

// VmRecord: everything kilnd knows about one VM, as stored in the state database (one JSON document per row,
// so adding a field needs no schema migration) and as the Kiln VM API shows it. Plain data; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "common/rfc3339.h"

namespace kiln::daemon {

enum class VmState {
  kCreating,  // root disk being built; not yet usable
  kStopped,   // created, or stopped; nothing running
  kStarting,
  kRunning,
  kPaused,  // vCPUs stopped, memory held
  kStopping,
  kSuspending,
  kSuspended,  // memory and device state on disk, no monitor process
  kError,      // the last start or the monitor failed; state_reason says why
};
std::string_view to_string(VmState state);
std::optional<VmState> vm_state_from_string(std::string_view text);
// States in which a monitor process should exist.
bool has_monitor(VmState state);

// Where a VM's root filesystem came from. kContainer: a Docker container's VM, with no root disk of its own:
// the image's shared read-only EROFS and the container's writable ext4 layer, joined by overlayfs in the
// guest.
struct RootSource {
  enum class Kind { kDefault, kDirectory, kTarball, kImage, kVm, kContainer } kind = Kind::kDefault;
  std::string value;  // path, image reference or template VM name; kContainer: the image ID
};
std::string_view to_string(RootSource::Kind kind);

struct SharedFolder {
  std::string id;          // stable within the VM ("0", "1", ... as AppCatalyst numbered them)
  std::string host_path;   // absolute, exists
  std::string guest_path;  // absolute path in the guest
  bool read_only = false;
  int64_t flags = 0;  // AppCatalyst's flags field, kept verbatim (bit 0: writable)
};

// A mount in a container VM's root (Docker's bind mounts, volumes and tmpfs mounts), which the agent sets up
// before the container's process starts. Host paths reach the guest through the VM's one 9p share (see
// VmManager::spec_for), each as an entry of it.
struct ContainerMount {
  enum class Kind { kHostPath, kTmpfs } kind = Kind::kHostPath;
  std::string host_path;    // kHostPath: an absolute host directory or regular file
  std::string destination;  // absolute path inside the container
  bool read_only = false;
  bool copy_up = false;  // kHostPath directory: filled from the image's files there while empty (a volume)
  std::string options;   // kTmpfs: mount options, e.g. "noexec,nosuid,nodev,size=65536k,mode=1777"
  bool operator==(const ContainerMount&) const = default;
};

// A network a VM is connected to while it runs: one NIC per entry, in order (the guest's eth0, eth1...).
struct VmNetworkRequest {
  std::string network;               // a network's name or id (kilnd's NetworkManager)
  std::string ipv4;                  // a fixed address in the network's subnet; empty: the next free one
  std::vector<std::string> aliases;  // names other VMs on the network resolve to this VM (DNS)
  std::string mac;                   // empty: derived from the address, as Docker does (02:42:...)
  bool operator==(const VmNetworkRequest&) const = default;
};

// A guest port published on the host: kilnd listens on host_ip:host_port and connects to the guest's first
// NIC's address on guest_port.
struct PortPublication {
  std::string protocol = "tcp";  // "tcp" or "udp"
  std::string host_ip;           // empty: all of the host's addresses (0.0.0.0)
  uint16_t host_port = 0;        // 0: a free port, chosen at start
  uint16_t guest_port = 0;
  // > host_port: the first free port of host_port..host_port_last (docker run -p 8000-8010:80); a running
  // VM's published ports have the chosen one in host_port and 0 here.
  uint16_t host_port_last = 0;
  bool operator==(const PortPublication&) const = default;
};

// A running VM's NIC: what its network gave it.
struct VmNic {
  std::string network_id;
  std::string network_name;
  std::string endpoint_id;           // 64 hex digits, new at every start (Docker's EndpointID)
  std::string bridge;                // the network's bridge in Kiln's network namespace
  std::string mac;                   // "02:42:ac:11:00:02"
  std::string ipv4;                  // "172.17.0.2"
  int prefix_length = 0;             // 16
  std::string gateway;               // "172.17.0.1"; empty on an internal network
  std::vector<std::string> dns;      // resolvers the guest uses (the network's DNS server)
  std::vector<std::string> aliases;  // the names it answers to on that network
  size_t slot = 0;                   // which of the VM's NIC slots (VmRecord::nic_taps) it is
  bool operator==(const VmNic&) const = default;
};

struct VmRecord {
  std::string id;    // 64 hex digits
  std::string name;  // [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}, unique
  unsigned cpus = 1;
  uint64_t memory_mib = 512;
  uint64_t disk_mib = 1024;
  RootSource source;
  std::string kernel;  // override; empty: Kiln's guest kernel
  std::map<std::string, std::string> labels;
  std::string tag;  // AppCatalyst's free-form tag
  std::vector<SharedFolder> folders;
  bool folders_enabled = true;
  // A container's VM: the container's id. The ContainerManager drives it; the Kiln and AppCatalyst APIs list
  // it but refuse to start, reconfigure or delete it.
  std::string owner;
  std::string image_rootfs;                      // kContainer: the image's EROFS file (read-only disk 0)
  std::vector<ContainerMount> container_mounts;  // kContainer only; fixed at create
  // Networking: what the VM asks for (changed only while it is not running), and, while it runs, what it got.
  std::vector<VmNetworkRequest> networks;
  std::vector<PortPublication> ports;
  std::vector<VmNic> nics;  // running: one per request, in order
  // Running: the host end (a tap in Kiln's network namespace) of each of the VM's NIC slots, in slot order.
  // Slots no NIC uses are spares, on no bridge, that a running VM's new network takes (a container VM has
  // kContainerNicSlots).
  std::vector<std::string> nic_taps;
  std::vector<PortPublication> published;  // running: `ports` with every host_port chosen

  VmState state = VmState::kCreating;
  std::string state_reason;  // why it is in that state (error, died, killed)
  int64_t monitor_pid = 0;
  std::string created_at;  // RFC 3339, UTC
  std::string started_at;
  std::string finished_at;
  // How the last start went. start_mode "boot" (cold), "fork" or "restore" (from a suspended memory file); a
  // forked VM names its template by key for as long as it has a monitor (kilnd keeps that template's files
  // while any VM names it, across restarts); start_timings: the engine's and kilnd's steps, in milliseconds,
  // in order. start_pooled: the fork was done ahead of the start (a warm pool clone).
  std::string start_mode;
  std::string template_key;
  bool start_pooled = false;
  std::vector<std::pair<std::string, double>> start_timings;
};

// Storage form (all fields).
Json to_storage_json(const VmRecord& vm);
// Published ports' storage form (VM and container records share it).
Json ports_to_storage_json(const std::vector<PortPublication>& ports);
std::vector<PortPublication> ports_from_storage_json(const Json& json, std::string_view key);
Result<VmRecord> vm_from_storage_json(const Json& json);

}  // namespace kiln::daemon

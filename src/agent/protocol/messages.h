// The agent protocol's messages: typed values for every control payload, encoded as JSON (small and
// debuggable) except credit grants, which are frequent and binary. Decoders validate everything a peer
// sends (types, ranges, NUL bytes) and ignore unknown fields, so a minor version may add fields.
// Plain functions over values: callable from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/child_process.h"
#include "common/error.h"

namespace kiln::agent {

// Majors must match; a minor may add optional fields and capabilities only.
struct ProtocolVersion {
  uint32_t major = 0;
  uint32_t minor = 0;
  bool operator==(const ProtocolVersion&) const = default;
};
// 1.1 added MOUNT/UNMOUNT (capability "mount") and HELLO_REPLY's "root" (capability "root_disk"), and
// SET_CLOCK (capability "clock"). 1.2 added SET_HOSTNAME (capability "hostname"). 1.3 added RUN's
// "container" (capability "container"). 1.4 added MOUNT by disk serial and overlay directories (capability
// "mount_serial"). 1.5 added the container part's "files" and "join" (capabilities "container_files",
// "container_join"), and processes kept across host sessions: RUN's "keep_on_disconnect", HELLO_REPLY's
// "kept_processes", REATTACH (capability "reattach"). 1.6 added CLONE_INIT (capability "clone_init"). 1.7
// added RUN's "builtin" (capability "file_builtins") and MOUNT in a container's root (capability
// "mount_in_root"). 1.8 added CONFIGURE_NETWORK and CLONE_INIT's "network" (capability "network"). 1.9 added
// an interface config's "device_mac", "default_route" and "down" (capability "network_slots"), and
// CLONE_INIT_REPLY's "steps_ms" (no capability: a host ignores it or finds it absent).
inline constexpr ProtocolVersion kProtocolVersion{1, 9};

// Bytes a sender may have in flight per data channel before the receiver grants more (README, "Flow
// control").
inline constexpr uint32_t kInitialWindow = 256 * 1024;

struct HelloRequest {
  ProtocolVersion version = kProtocolVersion;
  std::string peer;  // "kiln 0.1.0": for logs only
};

// What became of the root disk the kernel command line named (kiln.root=SERIAL), as the agent found it
// at boot. Minor-version addition: absent when no root disk was asked for, or from an older agent.
struct RootDiskStatus {
  std::string serial;  // "kiln-disk0"
  std::string device;  // "/dev/vda"; empty if never found
  bool mounted = false;
  std::string error;  // why not, when !mounted
  bool operator==(const RootDiskStatus&) const = default;
};

struct HelloReply {
  ProtocolVersion version = kProtocolVersion;
  std::string agent;                      // "kiln-agent 0.1.0"
  std::vector<std::string> capabilities;  // e.g. "tty", "signal", "resize", "shutdown", "root_disk", "mount"
  std::optional<RootDiskStatus> root;
  // Since 1.5 (capability "reattach"): processes kept from an earlier host session (ProcessSpec::
  // keep_on_disconnect) that a REATTACH can take over; their ids stay taken on this connection.
  std::vector<uint32_t> kept_processes;
};

struct TtySize {
  uint16_t rows = 24;
  uint16_t cols = 80;
  bool operator==(const TtySize&) const = default;
};

// Run a process as a container's main process or exec: in its own mount, PID, UTS and IPC namespaces (so it
// is PID 1 of its namespace, with PID 1's signal semantics, as under Docker), pivoted into `root` (a
// directory the host had the agent mount, e.g. an overlay of the image and the writable layer), with /proc,
// /sys, /dev (Docker's device nodes, devpts, /dev/shm) mounted inside, and its capability bounding, permitted
// and effective sets cut to `capabilities` unless `privileged`. The VM is the isolation boundary; this makes
// programs behave as under Docker.
struct ContainerSpec {
  std::string root;                       // absolute guest path of the root filesystem
  std::string hostname;                   // empty: keep the VM's
  std::vector<std::string> capabilities;  // "CAP_CHOWN", ...: the whole set the process keeps
  bool privileged = false;                // keep every capability and a writable /sys
  bool read_only_root = false;            // remount the root read-only (docker run --read-only)
  // docker run -u: "name", "uid", "name:group", "uid:gid" (any mix), resolved against the root's /etc/passwd
  // and /etc/group, with the user's supplementary groups; overrides uid/gid. Empty: root (uid 0, gid 0).
  std::string user;
  // Since 1.5 (capability "container_files"): files the container sees in place of the image's, written into
  // `root` before the process starts (paths relative to it, e.g. "etc/hostname"; symlinks resolve inside it),
  // as Docker provides /etc/hostname, /etc/hosts and /etc/resolv.conf.
  std::map<std::string, std::string> files;
  // Since 1.5 (capability "container_join"): nonzero, the id (on this connection) of a running container
  // process whose mount, PID, UTS and IPC namespaces and root this one joins instead of making new ones, as
  // `docker exec` enters a running container. `root` still names where its files are (for `user`).
  uint32_t join = 0;
  // Since 1.5 (capability "container_init"): docker run --init. The process starts as a minimal init that
  // runs argv as its child, forwards signals to it, reaps orphans and exits with its status.
  bool init = false;
  bool operator==(const ContainerSpec&) const = default;
};

// Since 1.7 (capability "file_builtins"): one of the agent's own programs (src/agent/file_builtins.h:
// archive-stat, archive-get, archive-put, export, diff), which the agent runs by re-executing itself, so
// images need no tools of their own. Its stdin, stdout, stderr and exit status are a process's.
struct BuiltinSpec {
  std::string name;               // "archive-get"
  std::vector<std::string> args;  // its arguments
  std::string root;               // absolute guest path it chroots into first; empty: none
  bool operator==(const BuiltinSpec&) const = default;
};

// What to run. env nullopt: the agent's default environment (PATH only).
struct ProcessSpec {
  std::vector<std::string> argv;
  std::optional<std::vector<std::string>> env;  // "K=V"
  std::string cwd;                              // empty: "/"
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  bool tty = false;                        // a pty: stdout and stderr merged, as with docker -t
  TtySize size;                            // initial window size when tty
  std::optional<ContainerSpec> container;  // capability "container"; cwd is then inside the container
  // Since 1.5 (capability "reattach"): the process outlives the host's connection (a container's main
  // process across a kilnd restart); its output is held, bounded by its flow-control window (the process
  // blocks, nothing is dropped), until a new host sends REATTACH for its id.
  bool keep_on_disconnect = false;
  // Since 1.7 (capability "file_builtins"): run this builtin instead of argv (which may then be empty);
  // never with `container`.
  std::optional<BuiltinSpec> builtin;
};

struct ProcessStarted {
  int64_t pid = 0;  // the guest's pid, for logs
};

struct SignalRequest {
  int signum = 0;
};

struct ShutdownRequest {
  bool reboot = false;  // reboot(RB_AUTOBOOT) instead of powering off (QEMU -no-reboot then exits)
};

// An error the agent reports: for a process (its stream) or for the connection (stream 0).
struct ErrorReply {
  ErrorCategory category = ErrorCategory::kInternal;
  std::string message;
};

// MOUNT: mount(2) in the guest, after creating `target` (and its parents). The agent requires an absolute
// target without ".." (normalize_guest_path); `options` is the filesystem's data string. Since 1.4
// (capability "mount_serial"): a source "serial:kiln-disk1" names the virtio disk with that serial (waited
// for briefly), and an overlay's upperdir and workdir are created first.
inline constexpr std::string_view kSerialSourcePrefix = "serial:";
// How Kiln mounts a host directory shared over virtio-9p (kilnd's shared folders and container mounts, `kiln
// vm run -v`): no client cache, so the host's changes show at once.
inline constexpr std::string_view kShareMountOptions =
    "trans=virtio,version=9p2000.L,msize=262144,cache=none";
struct MountRequest {
  std::string source;   // "kilnshare0" (a 9p tag), "/dev/vdb", "serial:kiln-disk1"
  std::string target;   // "/mnt/hgfs/foo"
  std::string fstype;   // "9p", "ext4"
  std::string options;  // "trans=virtio,version=9p2000.L,msize=262144"
  bool read_only = false;
  // Since 1.7 (capability "mount_in_root"): `target` is inside the directory `root` (normalized, absolute),
  // resolved as if `root` were "/" (symlinks and ".." stay inside it), as a container's mounts are placed in
  // its root; missing directories are made, and for a bind of a file an empty file. Also since 1.7: fstype
  // "bind" (source: a guest path, bound with everything below it), and mount flag words in `options` ("ro",
  // "nosuid", "nodev", "noexec", "noatime", ...) become mount flags, the rest the filesystem's data.
  std::string root;
  // Since 1.7, bind only: Docker's volume copy-up. When the source directory is empty and the target (in
  // `root`) is a directory with entries, its contents (owners, modes, times, symlinks, hard links) are
  // copied into the source first, and the source takes the target's owner and mode.
  bool copy_up = false;
  bool operator==(const MountRequest&) const = default;
};

// REATTACH's payload (may be empty): how much of the process's stdout and stderr the host has durably kept
// since the process started. The agent then resends from there what it still has (the last kInitialWindow
// bytes of each stream) instead of only what it held, so output in flight when the old host died is not lost.
struct ReattachRequest {
  std::optional<uint64_t> stdout_offset;
  std::optional<uint64_t> stderr_offset;
  bool operator==(const ReattachRequest&) const = default;
};

struct UnmountRequest {
  std::string target;
};

// SET_CLOCK: the guest's wall clock (CLOCK_REALTIME) to the host's. A VM restored from a suspend resumes
// with the clock it was saved with; this brings it to now.
struct SetClockRequest {
  int64_t unix_nanos = 0;
};

// SET_HOSTNAME: the guest kernel's hostname (what `hostname` and a shell prompt show). Arrives after boot,
// like everything workload-specific, so a template VM can be forked under any name.
struct SetHostnameRequest {
  std::string hostname;  // 1-64 bytes of letters, digits, '-', '_' and '.' (Linux allows 64)
};

// CONFIGURE_NETWORK (since 1.8, capability "network"): the guest's NICs as the host's network gave them.
// Interface i is the guest's i-th virtio-net interface (eth0, eth1... in name order); one whose MAC already
// is `mac` is taken first (a cold-booted VM got its MAC from the device). Each is taken down, given its
// MAC, MTU and address, and brought up; the first with a gateway gets the default route. Idempotent.
struct InterfaceConfig {
  std::string mac;      // "02:42:ac:11:00:02"
  std::string address;  // "172.17.0.2/16"
  std::string gateway;  // "172.17.0.1"; empty: no default route through it
  uint32_t mtu = 0;     // 0: leave it
  // Name servers for the guest's /etc/resolv.conf (the first interface with any writes it); empty: leave it.
  std::vector<std::string> dns;
  // Since 1.9 (capability "network_slots"), so that one interface can change while the others keep going (a
  // running VM joining or leaving a network):
  // The interface whose device (permanent) address this is, whatever MAC the guest gave it since: the host
  // creates each NIC slot's device with a MAC of its own (engine::nic_device_mac). Empty: by `mac`, else the
  // next interface in order.
  std::string device_mac;
  std::optional<bool> default_route;  // unset: the first interface with a gateway gets it
  bool down = false;  // take the interface down and remove its address (needs device_mac; mac/address unused)
  bool operator==(const InterfaceConfig&) const = default;
};
struct NetworkConfigRequest {
  std::vector<InterfaceConfig> interfaces;
  bool operator==(const NetworkConfigRequest&) const = default;
};

// CLONE_INIT (since 1.6, capability "clone_init"): the identity of a VM forked from a template, which woke
// with the template's wall clock, hostname, kernel RNG state and machine id. Applied in field order; the
// first failure ends it (what was done stays done). The kernel has no VM generation id to tell it that it
// was cloned, so the host's `seed`, mixed in and followed by a forced CRNG reseed, is what makes two
// clones' getrandom() and /proc/sys/kernel/random/uuid differ.
inline constexpr size_t kCloneSeedMinBytes = 32;
inline constexpr size_t kCloneSeedMaxBytes = 512;
struct CloneInitRequest {
  int64_t unix_nanos = 0;  // CLOCK_REALTIME, as SET_CLOCK; the host client fills in its clock when 0
  std::string hostname;    // empty: keep the template's (validate_hostname otherwise)
  // Random bytes from the host (hex on the wire), kCloneSeedMinBytes..kCloneSeedMaxBytes, credited to the
  // guest kernel's pool (RNDADDENTROPY) before RNDRESEEDCRNG. The host client draws 32 when empty.
  std::string seed;
  bool reseed = true;      // false: neither step (only for tests that must observe the shared RNG)
  std::string machine_id;  // 32 lower-case hex digits for /etc/machine-id; empty: leave it
  // Since 1.8 (capability "network"): as CONFIGURE_NETWORK, after the machine id, before the mounts.
  std::vector<InterfaceConfig> network;
  std::vector<MountRequest> mounts;  // as MOUNT, in order; a serial: disk's buffers are flushed first
  bool operator==(const CloneInitRequest&) const = default;
};
// CLONE_INIT_REPLY (since 1.9 it may carry `steps_ms`): how long each step took in the guest, in the order
// done ("clock", "hostname", "rng", "machine_id", "network", "mount<N>:<fstype>"). Diagnostics only: a fork's
// agent setup is mostly this, and under TCG the guest is where the time goes. Empty from older agents.
struct CloneInitStep {
  std::string step;
  double ms = 0;
  bool operator==(const CloneInitStep&) const = default;
};
struct CloneInitReply {
  std::vector<CloneInitStep> steps;
  bool operator==(const CloneInitReply&) const = default;
};

enum class DataChannel : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2 };
std::string_view to_string(DataChannel channel);

struct CreditGrant {
  DataChannel channel = DataChannel::kStdout;
  uint32_t bytes = 0;
};

std::string encode(const HelloRequest& message);
std::string encode(const HelloReply& message);
std::string encode(const ProcessSpec& message);
std::string encode(const ProcessStarted& message);
std::string encode(const ExitStatus& message);
std::string encode(const SignalRequest& message);
std::string encode(const TtySize& message);
std::string encode(const ShutdownRequest& message);
std::string encode(const ErrorReply& message);
std::string encode(const CreditGrant& message);
std::string encode(const MountRequest& message);
std::string encode(const UnmountRequest& message);
std::string encode(const ReattachRequest& message);
std::string encode(const SetClockRequest& message);
std::string encode(const SetHostnameRequest& message);
std::string encode(const CloneInitRequest& message);
std::string encode(const CloneInitReply& message);
std::string encode(const NetworkConfigRequest& message);

Result<HelloRequest> decode_hello_request(std::string_view payload);
Result<HelloReply> decode_hello_reply(std::string_view payload);
Result<ProcessSpec> decode_process_spec(std::string_view payload);
Result<ProcessStarted> decode_process_started(std::string_view payload);
Result<ExitStatus> decode_exit_status(std::string_view payload);
Result<SignalRequest> decode_signal_request(std::string_view payload);
Result<TtySize> decode_tty_size(std::string_view payload);
Result<ShutdownRequest> decode_shutdown_request(std::string_view payload);
Result<ErrorReply> decode_error_reply(std::string_view payload);
Result<CreditGrant> decode_credit_grant(std::string_view payload);
Result<MountRequest> decode_mount_request(std::string_view payload);
Result<UnmountRequest> decode_unmount_request(std::string_view payload);
Result<ReattachRequest> decode_reattach_request(std::string_view payload);  // empty: no offsets
Result<SetClockRequest> decode_set_clock_request(std::string_view payload);
Result<SetHostnameRequest> decode_set_hostname_request(std::string_view payload);
// Bad values (a short or non-hex seed, a malformed machine id or hostname) are kInvalidArgument; a payload
// of the wrong shape is kProtocol.
Result<CloneInitRequest> decode_clone_init_request(std::string_view payload);
Result<CloneInitReply> decode_clone_init_reply(std::string_view payload);  // "{}": no steps
// "clock=1.5 hostname=0.2 ... mount0:erofs=15.1", for logs.
std::string format_clone_init_steps(const CloneInitReply& reply);
Result<NetworkConfigRequest> decode_network_config_request(std::string_view payload);
// A MAC ("xx:xx:xx:xx:xx:xx", hex), an IPv4 address with prefix, a gateway inside it.
Result<void> validate_interface_config(const InterfaceConfig& config);
// kInvalidArgument unless `machine_id` is 32 lower-case hex digits (systemd's machine-id(5) format).
Result<void> validate_machine_id(std::string_view machine_id);
// kInvalidArgument unless `seed` has kCloneSeedMinBytes..kCloneSeedMaxBytes bytes.
Result<void> validate_clone_seed(std::string_view seed);
// kInvalidArgument unless `hostname` is 1-64 bytes of [A-Za-z0-9._-] starting with a letter or digit.
Result<void> validate_hostname(std::string_view hostname);

// A guest path for MOUNT/UNMOUNT, normalized: absolute, "." and repeated or trailing slashes dropped. ".."
// is refused rather than resolved (the agent runs as root: a target must say plainly where it lands), and so
// is "/" itself. kInvalidArgument naming `what`.
Result<std::string> normalize_guest_path(std::string_view path, std::string_view what);

// Error categories travel by stable names ("not_found"), not by enum value.
std::string_view wire_name(ErrorCategory category);
ErrorCategory category_from_wire_name(std::string_view name);  // unknown names: kInternal

}  // namespace kiln::agent

// Fabric: Kiln's network namespace and what lives in it. Every guest network is a bridge inside one network
// namespace that kilnd creates and pins on a file (so it outlives kilnd and the VMs' taps stay on their
// bridges across a restart); each VM NIC is a tap on its network's bridge. Nothing is ever configured in the
// host's own namespace and the host's firewall is never touched: the only way out of Kiln's namespace is a
// user-mode NAT (slirp4netns) that makes the guests' outbound connections as ordinary sockets of the host,
// and the only way in is kilnd's port proxy, whose sockets are made here by socket().
//
// Thread-safe: calls run on one thread that has joined the namespace (setns is per thread, so no other kilnd
// thread ever changes namespace).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::net {

struct FabricConfig {
  // Where the namespace is pinned (a bind mount of its nsfs file); made if missing, reused if it is already a
  // network namespace. Under kilnd's --run-dir.
  std::string namespace_path;
  // The user-mode NAT's own subnet inside the namespace (its tap, its gateway): networks must not overlap it.
  std::string outbound_cidr = "10.0.2.0/24";
  // The NAT's gateway forwards to the host's loopback (what `--add-host NAME:host-gateway` resolves to). Off:
  // guests reach only the host's other addresses and beyond.
  bool host_loopback = true;
  // Directory for the NAT's pid file and log (under --run-dir).
  std::string state_dir;
  bool outbound = true;  // off: no NAT (tests of the fabric alone)
};

struct LinkInfo {
  std::string name;
  std::string kind;    // "bridge", "tun", "veth", "" for loopback
  std::string master;  // the bridge it is attached to, or ""
  bool up = false;
  std::vector<std::string> ipv4;  // "172.17.0.1/16"
};

class Fabric {
 public:
  // Opens (or creates) the namespace, brings its loopback up, sets its forwarding and isolation rules, and
  // starts the outbound NAT unless one from an earlier kilnd still runs. Needs root.
  static Result<std::unique_ptr<Fabric>> open(FabricConfig config);
  ~Fabric();
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;

  // A bridge named `name` (at most 15 bytes) with `gateway_cidr` ("172.18.0.1/16") as its address, up.
  // Idempotent: an existing bridge of that name is kept (its address set). `internal`: traffic from it is
  // never routed out of the namespace (docker network create --internal). Traffic between two bridges is
  // always dropped (networks are isolated from each other).
  Result<void> ensure_bridge(const std::string& name, const std::string& gateway_cidr, bool internal);
  // Deletes the bridge (its taps are detached, not deleted). Absent: ok.
  Result<void> remove_bridge(const std::string& name);
  // A new tap attached to `bridge`, up, with a virtio-net header (what QEMU's `-netdev tap,fd=N,vnet_hdr=on`
  // expects). The tap lives as long as some process holds the fd: pass it to the monitor and close yours.
  // Its name ("ktap" + digits) is set in `name`.
  Result<UniqueFd> open_tap(const std::string& bridge, std::string* name = nullptr);
  // A tap attached to nothing: the NIC of a template VM, which is never reached, or a spare NIC slot of a
  // VM that attach_tap later puts on a network (docker network connect of a running container).
  Result<UniqueFd> open_detached_tap(std::string* name = nullptr);
  // Puts an existing tap (by name) on `bridge` / takes it off again (a tap already gone: ok).
  Result<void> attach_tap(const std::string& tap, const std::string& bridge);
  Result<void> detach_tap(const std::string& tap, const std::string& bridge);
  // Every link in the namespace (tests check nothing is left behind).
  Result<std::vector<LinkInfo>> links();
  // A socket in the namespace (e.g. the port proxy's connection to a guest, a DNS server's listener).
  Result<UniqueFd> socket(int domain, int type, int protocol = 0);
  // Runs `work` on the namespace's thread (for code that must itself be inside the namespace).
  Result<void> run_inside(const std::function<Result<void>()>& work);

  const FabricConfig& config() const { return config_; }

 private:
  struct Key {};

 public:
  Fabric(Key /*only open() makes one*/, FabricConfig config);

 private:
  struct Worker;
  FabricConfig config_;
  std::unique_ptr<Worker> worker_;
};

}  // namespace kiln::net

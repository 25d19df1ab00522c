// WarmPool: forked VMs kept idle ahead of need, so that a container's start skips the fork itself (issue 12's
// warm pool). For each shape of VM a start has asked for (a template key: container VMs of one size), the
// pool keeps up to `size` clones forked from that template, with placeholders in their disk slots, an empty
// share, their NIC slots on spare taps (on no bridge) and their guest agent connected. A start takes one,
// VmManager gives it the VM's disks, share entries, taps, runtime directory and identity, and the pool forks
// a replacement in the background. A clone is handed out once and never comes back.
//
// Idle clones are not VMs: no store record, no listing, no events. kilnd kills them when it stops, and the
// next kilnd kills any that a killed kilnd left (each clone's directory holds its monitor's pid). Below a
// floor of available host memory the pool kills its idle clones and forks none; a shape nobody took for a
// while is dropped with its clones. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/client/agent_hub.h"
#include "common/error.h"
#include "engine/engine.h"
#include "engine/template_pool.h"

namespace kiln::daemon {

struct NicTap;

// In each idle clone's directory: its monitor's pid, for the next kilnd to kill it (clear_leftovers).
inline constexpr std::string_view kPoolPidFile = "monitor.pid";

struct WarmPoolConfig {
  std::string dir;  // one directory per idle clone, its runtime directory until it is taken (<run-dir>/pool)
  size_t size = 2;  // idle clones kept per shape
  // Below this much MemAvailable the pool shrinks to nothing and forks none.
  uint64_t min_available_mib = 1024;
  // A shape no start took for this long is dropped, its idle clones killed.
  std::chrono::milliseconds shape_lifetime = std::chrono::minutes(10);
  std::chrono::milliseconds agent_timeout = std::chrono::seconds(90);
  // The refill waits this long after the last take: the start that took a clone is then using the host's
  // CPUs (under TCG its guest's work is most of its time), and a fork beside it would slow it down.
  std::chrono::milliseconds refill_delay = std::chrono::milliseconds(500);
  // How often the refill thread looks at host memory and stale shapes when nothing wakes it.
  std::chrono::milliseconds check_interval = std::chrono::seconds(5);
  // A tap on no bridge, for each NIC slot of a clone (kilnd: Fabric::open_detached_tap). Unset: shapes with
  // NICs are not pooled.
  std::function<Result<NicTap>()> spare_tap;
  // Run in each clone once its agent answered, before it is idle (clone_warm_up.h): true when it warmed the
  // clone up, false when it had nothing to do; a clone it fails is discarded. Unset: none.
  std::function<Result<bool>(const engine::VmSpec&, engine::VmInstance&, agent::AgentHub&)> warm_up;
  // Reads MemAvailable in MiB (tests replace it); unset: /proc/meminfo.
  std::function<uint64_t()> available_mib;
};

// An idle clone, handed to the start that took it.
struct PooledVm {
  std::unique_ptr<engine::VmInstance> instance;
  std::unique_ptr<agent::AgentHub> hub;  // connected: the agent said HELLO
  std::vector<std::string> taps;         // one per NIC slot, in slot order, on no bridge
  std::string template_key;
  std::string dir;  // its runtime directory, until VmInstance::relocate moves it
  engine::StartTimings fork_timings;
};

// Counts for listings.
struct WarmPoolStats {
  size_t idle = 0;
  size_t forking = 0;
};

class WarmPool {
 public:
  WarmPool(WarmPoolConfig config, engine::Engine& engine, engine::TemplatePool& templates);
  // Stops the refill thread and kills every idle clone.
  ~WarmPool();
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // At kilnd start, before templates are pruned: kills the monitors a previous kilnd left in `dir` and
  // removes their directories.
  void clear_leftovers();
  // Can VMs like `spec` be served from a pool at all? Their shares must live in their runtime directory (it
  // moves with the clone) and their NICs need spare taps.
  bool can_serve(const engine::VmSpec& spec) const;
  // An idle clone for a VM like `spec` (template `key`), or nullopt when none is ready (its start forks).
  // Either way the pool learns the shape and refills it in the background.
  std::optional<PooledVm> take(const std::string& key, const engine::VmSpec& spec);
  // Learns the shape and fills it in the background without taking anything (kiln template warm).
  void want(const std::string& key, const engine::VmSpec& spec);
  // Kills the idle clones of `key` and forgets the shape (before its template is removed).
  void drain(const std::string& key);
  WarmPoolStats stats(const std::string& key);
  // Kills a clone and removes its directory (never under mutex_: a kill waits for the monitor).
  static void discard(PooledVm vm);

 private:
  struct Shape {
    engine::VmSpec spec;  // a VM of the shape, as a start asked for it
    std::deque<PooledVm> idle;
    size_t forking = 0;
    std::chrono::steady_clock::time_point last_taken;
    std::chrono::steady_clock::time_point retry_after{};  // after a failed fork
  };

  void refill_loop();
  // Forks one clone of `spec` (its template `key`) into a new directory; connected to its agent.
  Result<PooledVm> fork_one(const std::string& key, const engine::VmSpec& spec);
  uint64_t available_mib() const;

  WarmPoolConfig config_;
  engine::Engine& engine_;
  engine::TemplatePool& templates_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, Shape> shapes_;
  uint64_t next_clone_ = 0;
  std::chrono::steady_clock::time_point last_take_{};  // of any shape
  bool stopping_ = false;
  std::thread refiller_;  // last: started once everything above exists
};

}  // namespace kiln::daemon

// TemplatePool: the fork templates on disk, shared by kilnd (<root>/templates) and `kiln vm run` without
// kilnd (the same directory when both run as root with kilnd's default root). For each template key
// (engine.h: what a saved guest depends on) it owns one directory under <root>/templates/<key>, built on
// first need by booting the guest kit with placeholder disk slots and saving it once its agent is idle; every
// later VM of that shape is forked from it. Builds of one key are serialized (concurrent starts wait for the
// one build); a key whose build failed is not retried for a minute (starts boot cold meanwhile). Templates
// are removed only when no VM that kilnd knows to be running names them (VmRecord::template_key), so a
// clone's memory file stays, also across kilnd restarts. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/engine.h"

namespace kiln::engine {

struct TemplatePoolConfig {
  std::string dir;  // one directory per key (kilnd: <root>/templates)
  std::string
      run_dir;  // sockets and console of template VMs while they are built (kilnd: <run-dir>/templates)
  std::chrono::milliseconds agent_timeout = std::chrono::seconds(90);
  // Unused templates older than this are removed by prune() (their inputs changed, or nothing needs them).
  std::chrono::hours keep_unused = std::chrono::hours(24 * 7);
  // A tap attached to nothing, for each NIC slot of a template (its guest never sends a packet that matters;
  // clones bring their own taps). Unset: VMs with NICs cannot have templates and boot cold.
  std::function<Result<UniqueFd>()> scratch_tap;
};

// One template on disk, for listings.
struct TemplateInfo {
  std::string key;
  std::string dir;
  uint64_t memory_bytes = 0;
  unsigned cpus = 0;
  uint64_t memory_mib = 0;
  std::string error;  // not usable (damaged, another QEMU): why
  int in_use = 0;     // running VMs forked from it (filled by VmManager)
  int pooled = 0;     // idle warm pool clones forked from it (filled by VmManager)
};

// The size of every template disk slot: the guest reads a disk's size once, at boot, so a slot is as large
// as the largest disk a clone may bring (the image's EROFS, the writable layer). Reads beyond a clone's
// real disk fail; filesystems never make them.
inline constexpr uint64_t kTemplateSlotBytes = uint64_t{1} << 40;

class TemplatePool {
 public:
  TemplatePool(TemplatePoolConfig config, Engine& engine);

  // The template VMs like `spec` fork from (its disks' paths are ignored; their slots and read-only flags
  // count). Built now if there is none; `built` is set when this call built it.
  Result<VmTemplate> template_for(const VmSpec& spec, bool* built = nullptr);
  // Removes templates that no running VM uses (`in_use`: keys) and that are damaged, or from another
  // engine version, or unused for keep_unused. At kilnd start, after recovery.
  void prune(const std::set<std::string>& in_use);
  // A fork from `key`'s template failed in a way the template may cause (its files changed under kilnd):
  // the next start opens it again, and builds it anew if it no longer opens.
  void forget(const std::string& key);
  // Deletes the template's directory (the caller checked no running VM uses it). kNotFound if absent.
  Result<void> remove(const std::string& key);
  std::vector<TemplateInfo> list();

 private:
  struct KeyState {
    std::mutex build;  // held while the key's template is built
    std::optional<VmTemplate> ready;
    std::chrono::steady_clock::time_point failed_until{};
    std::string failure;
    std::chrono::steady_clock::time_point marked_used{};  // when last-used was last written
  };
  std::shared_ptr<KeyState> state_for(const std::string& key);
  // Renews the template's last-used mark (for prune), at most every hour; the caller holds state.build.
  void mark_used(KeyState& state, const std::string& key);
  Result<VmTemplate> build(const VmSpec& spec, const std::string& key);
  std::string dir_for(const std::string& key) const { return config_.dir + "/" + key; }

  TemplatePoolConfig config_;
  Engine& engine_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<KeyState>> keys_;
};

}  // namespace kiln::engine

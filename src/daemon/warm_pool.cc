#include "daemon/warm_pool.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "common/units.h"
#include "daemon/vm_manager.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A shape whose fork failed is not tried again for this long (its template may be rebuilding or broken).
constexpr auto kRetryAfterFailure = std::chrono::seconds(30);

uint64_t read_mem_available_mib() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    uint64_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib / 1024;
  }
  return UINT64_MAX;  // unknown: no pressure to act on
}

// The path of `path` relative to `dir`, when it lies inside it.
std::optional<std::string> inside(const std::string& path, const std::string& dir) {
  if (!path.starts_with(dir + "/")) return std::nullopt;
  return path.substr(dir.size() + 1);
}

}  // namespace

WarmPool::WarmPool(WarmPoolConfig config, engine::Engine& engine, engine::TemplatePool& templates)
    : config_(std::move(config)),
      engine_(engine),
      templates_(templates),
      refiller_([this] { refill_loop(); }) {}

WarmPool::~WarmPool() {
  std::vector<PooledVm> idle;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [key, shape] : shapes_) {
      for (auto& vm : shape.idle) idle.push_back(std::move(vm));
    }
    shapes_.clear();
  }
  wake_.notify_all();
  if (refiller_.joinable()) refiller_.join();
  for (auto& vm : idle) discard(std::move(vm));
}

void WarmPool::clear_leftovers() {
  std::error_code error;
  fs::create_directories(config_.dir, error);
  for (const auto& entry : fs::directory_iterator(config_.dir, error)) {
    std::string dir = entry.path().string();
    if (auto pid_text = read_file(dir + "/" + std::string(kPoolPidFile))) {
      while (!pid_text->empty() && pid_text->back() == '\n') pid_text->pop_back();
      if (auto pid = parse_unsigned<uint32_t>(*pid_text, "pid", 1, INT32_MAX)) {
        // adopt recognizes the clone's monitor by its working directory, so a recycled pid is left alone.
        engine::VmSpec spec{.name = "pool", .runtime_dir = dir, .die_with_launcher = false};
        if (auto monitor = engine_.adopt(spec, static_cast<pid_t>(*pid))) {
          log::info("killing a warm pool clone a previous kilnd left", {{"pid", *pid}, {"dir", dir}});
          (void)(*monitor)->kill();
        }
      }
    }
    fs::remove_all(dir, error);
  }
}

bool WarmPool::can_serve(const engine::VmSpec& spec) const {
  if (config_.size == 0) return false;
  if (!spec.nics.empty() && !config_.spare_tap) return false;
  for (const auto& share : spec.shares) {
    if (!inside(share.host_path, spec.runtime_dir)) return false;
  }
  return spec.restore_from.empty();
}

std::optional<PooledVm> WarmPool::take(const std::string& key, const engine::VmSpec& spec) {
  if (!can_serve(spec)) return std::nullopt;
  std::vector<PooledVm> dead;
  std::optional<PooledVm> taken;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return std::nullopt;
    auto [it, learnt] = shapes_.try_emplace(key);
    Shape& shape = it->second;
    if (learnt) shape.spec = spec;
    shape.last_taken = last_take_ = Clock::now();
    while (!shape.idle.empty() && !taken) {
      PooledVm vm = std::move(shape.idle.front());
      shape.idle.pop_front();
      // A clone that died while idle (killed, or its guest crashed) is no use.
      auto exited = vm.instance->wait_for_exit(std::chrono::milliseconds(0));
      if ((exited && *exited) || !vm.hub->alive()) {
        dead.push_back(std::move(vm));
      } else {
        taken = std::move(vm);
      }
    }
  }
  wake_.notify_all();
  for (auto& vm : dead) {
    log::warn("a warm pool clone died while idle", {{"dir", vm.dir}});
    discard(std::move(vm));
  }
  return taken;
}

void WarmPool::want(const std::string& key, const engine::VmSpec& spec) {
  if (!can_serve(spec)) return;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    auto [it, learnt] = shapes_.try_emplace(key);
    if (learnt) it->second.spec = spec;
    it->second.last_taken = Clock::now();
  }
  wake_.notify_all();
}

void WarmPool::drain(const std::string& key) {
  std::vector<PooledVm> idle;
  {
    std::lock_guard lock(mutex_);
    auto found = shapes_.find(key);
    if (found == shapes_.end()) return;
    for (auto& vm : found->second.idle) idle.push_back(std::move(vm));
    found->second.idle.clear();
    // A fork under way finds its shape gone and discards its clone.
    shapes_.erase(found);
  }
  for (auto& vm : idle) discard(std::move(vm));
}

WarmPoolStats WarmPool::stats(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto found = shapes_.find(key);
  if (found == shapes_.end()) return {};
  return {.idle = found->second.idle.size(), .forking = found->second.forking};
}

uint64_t WarmPool::available_mib() const {
  return config_.available_mib ? config_.available_mib() : read_mem_available_mib();
}

void WarmPool::discard(PooledVm vm) {
  vm.hub.reset();
  if (vm.instance) (void)vm.instance->kill();
  std::error_code ignored;
  if (!vm.dir.empty()) fs::remove_all(vm.dir, ignored);
}

Result<PooledVm> WarmPool::fork_one(const std::string& key, const engine::VmSpec& spec) {
  PooledVm vm{.template_key = key};
  {
    std::lock_guard lock(mutex_);
    vm.dir = fmt::format("{}/{}", config_.dir, next_clone_++);
  }
  std::error_code error;
  fs::remove_all(vm.dir, error);
  fs::create_directories(vm.dir, error);
  if (error) return Error::internal(fmt::format("create {}: {}", vm.dir, error.message()));
  auto failed = [&](Error cause) -> Error {
    discard(std::move(vm));
    return cause;
  };

  // The clone's own spec: the shape's hardware, nothing of any VM it will become.
  engine::VmSpec clone = spec;
  clone.name = fmt::format("pool-{}", fs::path(vm.dir).filename().string());
  clone.runtime_dir = vm.dir;
  clone.die_with_launcher = false;  // it will outlive kilnd once it is a VM; discard kills it before then
  engine::VmTemplate from = KILN_TRY(templates_.template_for(spec));
  for (size_t i = 0; i < clone.disks.size(); ++i) {
    uint64_t capacity = i < from.disk_capacity().size() ? from.disk_capacity()[i] : 0;
    clone.disks[i] = {.read_only = clone.disks[i].read_only,
                      .placeholder_bytes = capacity > 0 ? capacity : engine::kTemplateSlotBytes};
  }
  for (auto& share : clone.shares) {
    share.host_path = fmt::format("{}/{}", vm.dir, *inside(share.host_path, spec.runtime_dir));
    share.entries.clear();
    share.late_entries = true;  // the VM's host paths are bound in when it is taken (add_share_entries)
    fs::create_directories(share.host_path, error);
    if (error) return failed(Error::internal(fmt::format("create {}: {}", share.host_path, error.message())));
  }
  for (auto& nic : clone.nics) {
    auto tap = config_.spare_tap();
    if (!tap) return failed(tap.error().with_context("a warm pool clone's spare tap"));
    vm.taps.push_back(tap->name);
    nic = {.tap = std::make_shared<const UniqueFd>(std::move(tap->fd))};
  }
  auto forked = engine_.fork(from, clone);
  if (!forked) {
    if (forked.error().category() == ErrorCategory::kFailedPrecondition) templates_.forget(key);
    return failed(forked.error());
  }
  vm.instance = std::move(*forked);
  vm.fork_timings = vm.instance->start_timings();
  if (auto written = write_file_atomic(fmt::format("{}/{}", vm.dir, kPoolPidFile),
                                       fmt::format("{}\n", vm.instance->monitor_pid()));
      !written)
    return failed(written.error());
  auto channel = vm.instance->connect_agent();
  if (!channel) return failed(channel.error().with_context("connect to a warm pool clone's agent"));
  std::string name = clone.name;
  auto hub = agent::AgentHub::start(std::move(*channel), config_.agent_timeout, [name](const Error& closed) {
    log::debug("warm pool clone's agent channel closed", {{"clone", name}, {"reason", closed.message()}});
  });
  if (!hub) return failed(hub.error().with_context("a warm pool clone's agent did not answer"));
  vm.hub = std::move(*hub);
  if (config_.warm_up) {
    auto started = std::chrono::steady_clock::now();
    auto warmed = config_.warm_up(clone, *vm.instance, *vm.hub);
    if (!warmed) return failed(warmed.error().with_context("warm up a pool clone"));
    if (*warmed) {
      vm.fork_timings.push_back({"warm-up", std::chrono::duration_cast<std::chrono::microseconds>(
                                                std::chrono::steady_clock::now() - started)});
    }
  }
  return vm;
}

void WarmPool::refill_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    std::vector<PooledVm> dropped;
    auto now = Clock::now();
    // Shrink under memory pressure; forget shapes nobody takes any more.
    bool pressed = false;
    {
      lock.unlock();
      uint64_t available = available_mib();
      lock.lock();
      pressed = available < config_.min_available_mib;
      if (pressed) {
        for (auto& [key, shape] : shapes_) {
          if (shape.idle.empty()) continue;
          log::info("host memory is low: the warm pool shrinks",
                    {{"available_mib", available}, {"idle", shape.idle.size()}});
          for (auto& vm : shape.idle) dropped.push_back(std::move(vm));
          shape.idle.clear();
        }
      }
    }
    for (auto it = shapes_.begin(); it != shapes_.end();) {
      if (now - it->second.last_taken > config_.shape_lifetime && it->second.forking == 0) {
        for (auto& vm : it->second.idle) dropped.push_back(std::move(vm));
        it = shapes_.erase(it);
      } else {
        ++it;
      }
    }
    // One fork at a time, and none right after a take: the host's CPUs also run the VMs that are starting.
    std::string wanted;
    auto quiet_at = last_take_ + config_.refill_delay;
    if (!pressed && now >= quiet_at) {
      for (auto& [key, shape] : shapes_) {
        if (shape.idle.size() + shape.forking < config_.size && now >= shape.retry_after) {
          wanted = key;
          break;
        }
      }
    }
    if (!dropped.empty() || !wanted.empty()) {
      engine::VmSpec spec;
      if (!wanted.empty()) {
        spec = shapes_.at(wanted).spec;
        ++shapes_.at(wanted).forking;
      }
      lock.unlock();
      for (auto& vm : dropped) discard(std::move(vm));
      std::optional<Result<PooledVm>> forked;
      if (!wanted.empty()) {
        auto started = Clock::now();
        forked.emplace(fork_one(wanted, spec));
        if (*forked) {
          log::debug(
              "warm pool clone ready",
              {{"dir", (*forked)->dir},
               {"ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
        } else {
          log::warn("could not fork a warm pool clone", {{"error", (*forked).error().message()}});
        }
      }
      lock.lock();
      if (forked) {
        auto shape = shapes_.find(wanted);
        if (shape == shapes_.end() || stopping_) {
          // Drained or stopping meanwhile: the clone has nobody to wait for.
          if (*forked) {
            lock.unlock();
            discard(std::move(**forked));
            lock.lock();
          }
        } else {
          --shape->second.forking;
          if (*forked) {
            shape->second.idle.push_back(std::move(**forked));
          } else {
            shape->second.retry_after = Clock::now() + kRetryAfterFailure;
          }
        }
      }
      continue;
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(quiet_at - now);
    wake_.wait_for(lock, now < quiet_at ? std::min(wait, config_.check_interval) : config_.check_interval);
  }
}

}  // namespace kiln::daemon

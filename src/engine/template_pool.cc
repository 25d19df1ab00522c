#include "engine/template_pool.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/log.h"
#include "common/random_id.h"
#include "engine/template_guest.h"

namespace kiln::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// After a failed build, starts boot cold for this long before a build is tried again (a broken kernel must
// not cost every start a template boot).
constexpr auto kRetryAfterFailure = std::chrono::minutes(1);
// Marks a template's last use (its mtime), for prune().
constexpr std::string_view kLastUsedFile = "last-used";

// How often a template in use has its last-used mark renewed: prune() measures unused time in days, and a
// file write per fork would put I/O on the start path for nothing.
constexpr auto kMarkUsedEvery = std::chrono::hours(1);

}  // namespace

TemplatePool::TemplatePool(TemplatePoolConfig config, Engine& engine)
    : config_(std::move(config)), engine_(engine) {}

void TemplatePool::mark_used(KeyState& state, const std::string& key) {
  if (state.marked_used != Clock::time_point{} && Clock::now() - state.marked_used < kMarkUsedEvery) return;
  std::string path = dir_for(key) + "/" + std::string(kLastUsedFile);
  if (auto written = write_file_atomic(path, ""); !written) {
    log::debug("could not mark a template used", {{"path", path}, {"error", written.error().message()}});
    return;
  }
  state.marked_used = Clock::now();
}

std::shared_ptr<TemplatePool::KeyState> TemplatePool::state_for(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto& state = keys_[key];
  if (!state) state = std::make_shared<KeyState>();
  return state;
}

Result<VmTemplate> TemplatePool::template_for(const VmSpec& spec, bool* built) {
  if (built) *built = false;
  std::string key = KILN_TRY(engine_.template_key(spec));
  auto state = state_for(key);
  std::lock_guard build_lock(state->build);
  if (state->ready) {
    mark_used(*state, key);
    return *state->ready;
  }
  if (Clock::now() < state->failed_until) {
    return Error::unavailable(
        fmt::format("the template for this VM failed to build recently: {}", state->failure));
  }
  // Built by an earlier kilnd?
  std::string dir = dir_for(key);
  if (fs::exists(dir + "/snapshot.json")) {
    auto opened = engine_.open_template(dir);
    if (opened && opened->key() == key) {
      mark_used(*state, key);
      state->ready = *opened;
      return *opened;
    }
    // Damaged or stale: no VM can be using a template that does not open (fork opens it first), but a
    // clone of an older build of it may still map its memory file: move it aside, never overwrite it.
    std::string reason = opened ? "its key does not match" : opened.error().message();
    log::warn("template unusable; building it again", {{"dir", dir}, {"reason", reason}});
    std::error_code ignored;
    fs::rename(dir, fmt::format("{}.stale-{}", dir, random_hex_id(8).value_or("x")), ignored);
  }
  auto made = build(spec, key);
  if (!made) {
    state->failed_until = Clock::now() + kRetryAfterFailure;
    state->failure = made.error().message();
    return made.error();
  }
  if (built) *built = true;
  mark_used(*state, key);
  state->ready = *made;
  return *made;
}

Result<VmTemplate> TemplatePool::build(const VmSpec& spec, const std::string& key) {
  std::error_code error;
  fs::create_directories(config_.dir, error);
  if (error) return Error::internal(fmt::format("create {}: {}", config_.dir, error.message()));
  // Built aside and renamed into place: a directory under the key's name is always complete.
  std::string building =
      fmt::format("{}/.building-{}-{}", config_.dir, key.substr(0, 16), random_hex_id(8).value_or("x"));
  // Socket paths must stay short (108 bytes): the run dir gets a short name.
  std::string runtime = fmt::format("{}/{}", config_.run_dir, key.substr(0, 16));
  fs::create_directories(building, error);
  fs::create_directories(runtime, error);
  if (error) return Error::internal(fmt::format("create {}: {}", building, error.message()));
  auto cleanup = [&] {
    std::error_code ignored;
    fs::remove_all(building, ignored);
    fs::remove_all(runtime, ignored);
  };

  VmSpec booted = spec;
  booted.name = "kiln-template-" + key.substr(0, 12);
  booted.runtime_dir = runtime;
  booted.restore_from.clear();
  booted.die_with_launcher = true;  // never outlives the build
  for (auto& disk : booted.disks)
    disk = {.read_only = disk.read_only, .placeholder_bytes = kTemplateSlotBytes};
  // A template's shares are slots too: an empty directory each (clones bring their own), never mounted by
  // its guest (a mounted 9p share blocks the save).
  std::string empty_share = runtime + "/empty-share";
  if (!booted.shares.empty()) {
    fs::create_directories(empty_share, error);
    if (error) {
      cleanup();
      return Error::internal(fmt::format("create {}: {}", empty_share, error.message()));
    }
  }
  for (auto& share : booted.shares) share = {.tag = share.tag, .host_path = empty_share};
  for (auto& nic : booted.nics) {
    if (!config_.scratch_tap) {
      cleanup();
      return Error::unsupported("templates of VMs with NICs need taps (kilnd's network namespace)");
    }
    auto tap = config_.scratch_tap();
    if (!tap) {
      cleanup();
      return tap.error().with_context("a tap for the template's NIC");
    }
    nic = {.tap = std::make_shared<const UniqueFd>(std::move(*tap))};
  }

  auto started = Clock::now();
  log::info("building a VM template",
            {{"key", key.substr(0, 16)}, {"cpus", spec.cpus}, {"memory_mib", spec.memory_mib}});
  auto made = engine_.build_template(
      booted, building, [&](VmInstance& vm) { return settle_template_guest(vm, config_.agent_timeout); });
  if (!made) {
    cleanup();
    return made.error().with_context("build the VM template");
  }
  std::string dir = dir_for(key);
  fs::rename(building, dir, error);
  std::error_code ignored;
  fs::remove_all(runtime, ignored);
  if (error) {
    fs::remove_all(building, ignored);
    // Another process (kilnd, another `kiln vm run`) built the same key meanwhile: use theirs.
    if (auto theirs = engine_.open_template(dir); theirs && theirs->key() == key) return theirs;
    return Error::internal(fmt::format("move the template into {}: {}", dir, error.message()));
  }
  auto opened = KILN_TRY(engine_.open_template(dir));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log::info("VM template ready", {{"key", key.substr(0, 16)}, {"dir", dir}, {"ms", took.count()}});
  return opened;
}

void TemplatePool::forget(const std::string& key) {
  auto state = state_for(key);
  std::lock_guard build_lock(state->build);
  state->ready.reset();
}

Result<void> TemplatePool::remove(const std::string& key) {
  auto state = state_for(key);
  std::lock_guard build_lock(state->build);
  std::string dir = dir_for(key);
  if (key.empty() || key.find('/') != std::string::npos || key.starts_with(".") || !fs::is_directory(dir))
    return Error::not_found(fmt::format("no template {}", key));
  state->ready.reset();
  std::error_code error;
  fs::remove_all(dir, error);
  if (error) return Error::internal(fmt::format("remove {}: {}", dir, error.message()));
  log::info("removed a VM template", {{"key", key}});
  return ok();
}

std::vector<TemplateInfo> TemplatePool::list() {
  std::vector<TemplateInfo> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(config_.dir, error)) {
    std::string name = entry.path().filename();
    if (!entry.is_directory() || name.starts_with(".") || name.find('.') != std::string::npos) continue;
    TemplateInfo info{.key = name, .dir = entry.path()};
    if (auto opened = engine_.open_template(info.dir)) {
      info.memory_bytes = opened->memory_bytes();
      info.cpus = opened->cpus();
      info.memory_mib = opened->memory_mib();
    } else {
      info.error = opened.error().message();
    }
    found.push_back(std::move(info));
  }
  return found;
}

void TemplatePool::prune(const std::set<std::string>& in_use) {
  std::error_code error;
  auto now = fs::file_time_type::clock::now();
  for (const auto& entry : fs::directory_iterator(config_.dir, error)) {
    std::string name = entry.path().filename();
    std::string key = name.substr(0, name.find('.'));
    if (name.starts_with(".building-")) {
      // Left by a process that died while building (its template VM died with it); a recent one may be
      // another process's build in progress (`kiln vm run` shares the directory).
      std::error_code no_time;
      auto started = fs::last_write_time(entry.path(), no_time);
      if (!no_time && now - started < std::chrono::minutes(10)) continue;
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
      continue;
    }
    if (in_use.contains(key)) continue;
    std::string why;
    if (name != key) {
      why = "replaced by a newer build";
    } else if (auto opened = engine_.open_template(entry.path()); !opened) {
      why = opened.error().message();
    } else {
      std::error_code no_time;
      auto used = fs::last_write_time(entry.path() / std::string(kLastUsedFile), no_time);
      if (no_time || now - used > config_.keep_unused) why = "unused";
    }
    if (why.empty()) continue;
    log::info("removing a VM template", {{"dir", entry.path().string()}, {"reason", why}});
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

}  // namespace kiln::engine

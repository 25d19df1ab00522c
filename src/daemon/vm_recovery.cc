// VmManager at daemon start (recover: adopt surviving VMs, settle the rest) and the monitor watcher that
// notices VMs whose monitor exited on its own (guest power-off, crash, someone's kill -9).
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>

#include "common/errno_text.h"
#include "common/log.h"
#include "daemon/vm_manager.h"
#include "daemon/vm_slot.h"

namespace kiln::daemon {
namespace {
namespace fs = std::filesystem;
}  // namespace

Result<void> VmManager::recover() {
  auto vms = KILN_TRY(store_.list());
  for (auto& vm : vms) {
    if (vm.state == VmState::kCreating) {
      // kilnd died while building it: nothing usable was created.
      std::error_code error;
      fs::remove_all(vm_dir(vm.id), error);
      KILN_TRY(store_.remove(vm.id));
      log::info("removed a VM whose creation was interrupted", {{"vm", vm.name}});
      continue;
    }
    if (!has_monitor(vm.state)) continue;
    auto slot = slot_for(vm.id);
    std::lock_guard guard(slot->lock);
    auto adopted = engine_.adopt(spec_for(vm), static_cast<pid_t>(vm.monitor_pid));
    if (!adopted) {
      std::string reason =
          fmt::format("the VM's monitor exited while kilnd was not running ({})", adopted.error().message());
      vm.monitor_pid = 0;
      vm.finished_at = now_rfc3339();
      KILN_TRY(save(vm, VmState::kStopped, reason));
      publish(vm, "died", {{"reason", reason}});
      log::warn("VM found stopped at recovery", {{"vm", vm.name}, {"reason", reason}});
      continue;
    }
    if (vm.state == VmState::kStarting) {
      // kilnd died in the middle of the start: the guest may lack its identity, mounts or network. Its
      // monitor goes; the next start begins afresh. (A restore's saved state cannot be trusted after its
      // guest ran: set aside, as a failed restore's is.)
      (void)(*adopted)->kill();
      std::error_code ignored;
      if (fs::exists(suspend_dir(vm.id), ignored)) {
        fs::remove_all(suspend_dir(vm.id) + ".failed", ignored);
        fs::rename(suspend_dir(vm.id), suspend_dir(vm.id) + ".failed", ignored);
      }
      std::string reason = "kilnd stopped while the VM was starting; its monitor was stopped";
      vm.monitor_pid = 0;
      vm.finished_at = now_rfc3339();
      KILN_TRY(save(vm, VmState::kStopped, reason));
      publish(vm, "died", {{"reason", reason}});
      log::warn("VM found half-started at recovery", {{"vm", vm.name}});
      continue;
    }
    slot->running = std::make_unique<RunningVm>();
    slot->running->instance = std::move(*adopted);
    auto run_state = slot->running->instance->run_state();
    VmState state =
        run_state && *run_state == engine::VmRunState::kPaused ? VmState::kPaused : VmState::kRunning;
    if (state == VmState::kRunning) {
      // A paused guest cannot answer HELLO; its agent is reconnected on resume.
      if (auto connected = connect_agent(*slot, vm); !connected) {
        log::warn("adopted VM's agent did not answer",
                  {{"vm", vm.name}, {"error", connected.error().message()}});
      }
    }
    if (config_.networking && (!vm.nics.empty() || !vm.published.empty())) {
      if (auto adopted_network = config_.networking->adopt(vm); !adopted_network) {
        log::warn("adopted VM's network could not be taken back",
                  {{"vm", vm.name}, {"error", adopted_network.error().message()}});
      }
    }
    watch(vm.id, *slot->running->instance);
    KILN_TRY(save(vm, state, vm.state_reason));
    log::info("re-attached to a running VM", {{"vm", vm.name}, {"state", to_string(state)}});
  }
  wake_watcher();
  return ok();
}

void VmManager::watch(const std::string& id, const engine::VmInstance& instance) {
  {
    std::lock_guard guard(watch_mutex_);
    watched_[id] = {.exit_fd = UniqueFd(::fcntl(instance.exit_fd(), F_DUPFD_CLOEXEC, 0)),
                    .generation = ++watch_generation_};
  }
  wake_watcher();
}

void VmManager::unwatch(const std::string& id) {
  std::lock_guard guard(watch_mutex_);
  watched_.erase(id);
}

void VmManager::wake_watcher() {
  uint64_t one = 1;
  (void)!::write(watcher_wakeup_.get(), &one, sizeof one);
}

void VmManager::watch_monitors() {
  for (;;) {
    std::vector<pollfd> fds{{.fd = watcher_wakeup_.get(), .events = POLLIN, .revents = 0}};
    std::vector<std::pair<std::string, uint64_t>> polled;  // id and generation, by fds index - 1
    {
      std::lock_guard guard(watch_mutex_);
      if (stopping_) return;
      for (const auto& [id, watched] : watched_) {
        fds.push_back({.fd = watched.exit_fd.get(), .events = POLLIN, .revents = 0});
        polled.emplace_back(id, watched.generation);
      }
    }
    // The timeout bounds how long a dup'ed fd of a VM removed meanwhile stays in this list.
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) {
      log::error("monitor watcher poll failed", {{"error", errno_text(errno)}});
      return;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t count = 0;
      (void)!::read(watcher_wakeup_.get(), &count, sizeof count);
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const auto& [id, generation] = polled[i - 1];
      {
        std::lock_guard guard(watch_mutex_);
        if (stopping_) return;
        // Dropped or replaced while we polled (its fd may even have been closed under poll: POLLNVAL): the
        // event is not about the current monitor, and the current entry is polled on the next round.
        auto current = watched_.find(id);
        if (current == watched_.end() || current->second.generation != generation) continue;
        watched_.erase(current);
      }
      on_monitor_exit(id);
    }
  }
}

void VmManager::on_monitor_exit(const std::string& id) {
  auto slot = slot_for(id);
  std::lock_guard guard(slot->lock);
  if (!slot->running) return;  // an operation already took care of it
  auto status = slot->running->instance->wait_for_exit(std::chrono::milliseconds(0));
  if (!status || !*status) return;  // not actually gone
  auto record = store_.get(id);
  if (!record || !*record) return;
  VmRecord vm = std::move(**record);
  std::string reason = slot->running->instance->exit_reason();
  slot->running.reset();
  vm.monitor_pid = 0;
  vm.finished_at = now_rfc3339();
  if (auto saved = save(vm, VmState::kStopped, reason); !saved) {
    log::error("could not record a VM's exit", {{"vm", vm.name}, {"error", saved.error().message()}});
  }
  publish(vm, "died", {{"reason", reason}});
  log::info("VM stopped on its own", {{"vm", vm.name}, {"reason", reason}});
}

}  // namespace kiln::daemon

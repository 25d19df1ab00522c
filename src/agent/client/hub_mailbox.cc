#include "agent/client/hub_mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace kiln::agent::detail {

Result<std::shared_ptr<HubMailbox>> HubMailbox::create() {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Error::last_os_error("eventfd");
  return std::shared_ptr<HubMailbox>(new HubMailbox(std::move(wake)));
}

void HubMailbox::wake() {
  uint64_t one = 1;
  // Only EAGAIN (counter saturated) can fail here, and then the hub is awake anyway.
  (void)!::write(wake_.get(), &one, sizeof one);
}

Result<void> HubMailbox::post(Work work) {
  Task task{std::move(work)};
  std::unique_lock lock(mutex_);
  if (closed_) return *closed_;
  if (std::this_thread::get_id() == hub_thread_) {
    return Error::failed_precondition("agent hub: a call from the hub thread would wait for itself");
  }
  queue_.push_back(&task);
  wake();
  completed_.wait(lock, [&task] { return task.done; });
  if (task.dropped) return *task.dropped;
  return ok();
}

std::optional<Error> HubMailbox::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

void HubMailbox::bind_to_current_thread() {
  std::lock_guard lock(mutex_);
  hub_thread_ = std::this_thread::get_id();
}

std::deque<HubMailbox::Task*> HubMailbox::take() {
  uint64_t count = 0;
  (void)!::read(wake_.get(), &count, sizeof count);  // EAGAIN when woken only by poll's first pass
  std::lock_guard lock(mutex_);
  return std::exchange(queue_, {});
}

void HubMailbox::complete(Task* task) {
  std::lock_guard lock(mutex_);
  task->done = true;
  completed_.notify_all();
}

void HubMailbox::drop(Task* task, const Error& why) {
  std::lock_guard lock(mutex_);
  task->dropped = why;
  task->done = true;
  completed_.notify_all();
}

void HubMailbox::close(const Error& why) {
  std::lock_guard lock(mutex_);
  if (!closed_) closed_ = why;
  for (Task* task : std::exchange(queue_, {})) {
    task->dropped = *closed_;
    task->done = true;
  }
  completed_.notify_all();
}

void HubMailbox::request_stop() {
  std::lock_guard lock(mutex_);
  stop_requested_ = true;
  wake();
}

bool HubMailbox::stop_requested() const {
  std::lock_guard lock(mutex_);
  return stop_requested_;
}

}  // namespace kiln::agent::detail

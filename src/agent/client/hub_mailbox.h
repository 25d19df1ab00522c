// HubMailbox: how other threads hand work to an AgentHub's thread. A caller posts a task and blocks until
// the hub thread ran it; an eventfd wakes the hub's poll loop. Shared (shared_ptr) by the hub and every
// ExecHandle, so a handle that outlives the hub finds it closed instead of dangling.
// Threading: post()/closed() from any thread but the hub's; wake_fd()/take()/complete()/close() on the hub
// thread only. One mutex guards the queue and every task's completion.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent::detail {

class HubLoop;

class HubMailbox {
 public:
  using Work = std::function<void(HubLoop&)>;

  // A posted task; lives on the poster's stack until it is completed.
  struct Task {
    Work work;
    bool done = false;
    std::optional<Error> dropped;  // why it never ran
  };

  static Result<std::shared_ptr<HubMailbox>> create();

  // Runs `work` on the hub thread and waits for it. The hub's error (kUnavailable) if the hub is closed or
  // closes before running it; kFailedPrecondition when called on the hub thread, which would wait forever.
  Result<void> post(Work work);
  // The error posts fail with once the hub is gone.
  std::optional<Error> closed() const;

  // Hub thread: the eventfd to poll for POLLIN, the tasks posted so far, and each task's completion.
  void bind_to_current_thread();
  int wake_fd() const { return wake_.get(); }
  std::deque<Task*> take();
  void complete(Task* task);
  void drop(Task* task, const Error& why);
  // Fails every queued task and every later post with `why`.
  void close(const Error& why);
  // Wakes the hub thread and asks it to stop (from the AgentHub's destructor).
  void request_stop();
  bool stop_requested() const;

 private:
  explicit HubMailbox(UniqueFd wake) : wake_(std::move(wake)) {}
  void wake();

  UniqueFd wake_;  // eventfd
  mutable std::mutex mutex_;
  std::condition_variable completed_;
  std::deque<Task*> queue_;
  std::optional<Error> closed_;
  bool stop_requested_ = false;
  std::thread::id hub_thread_;
};

}  // namespace kiln::agent::detail

// A thread that lives in one network namespace and runs work there. setns(2) changes only the calling
// thread's namespace, and sockets, taps and netlink requests belong to the namespace of the thread that makes
// them: funnelling all of that through one dedicated thread means no other thread of kilnd ever leaves the
// host's namespace. Processes spawned from inside `run` (fork copies the calling thread) start in the
// namespace too.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/error.h"

namespace kiln::net {

class NamespaceThread {
 public:
  // Joins the network namespace pinned at `path`, or, when nothing valid is pinned there, makes a new one and
  // pins it there (bind mount of the thread's nsfs file, like `ip netns add`) so it outlives this process.
  static Result<std::unique_ptr<NamespaceThread>> open_or_create(const std::string& path);
  ~NamespaceThread();
  NamespaceThread(const NamespaceThread&) = delete;
  NamespaceThread& operator=(const NamespaceThread&) = delete;

  // Runs `work` on the namespace's thread and waits for it. Thread-safe; calls run one at a time, in order.
  Result<void> run(const std::function<Result<void>()>& work);
  // Whether open_or_create made a new namespace (false: it joined a pinned one).
  bool created() const { return created_; }

 private:
  struct Key {};

 public:
  explicit NamespaceThread(Key /*only open_or_create makes one*/) {}

 private:
  void loop(const std::string& path, std::promise<Result<bool>>& ready);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  bool created_ = false;
  std::thread thread_;
};

}  // namespace kiln::net

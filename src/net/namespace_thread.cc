#include "net/namespace_thread.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>

#include "common/unique_fd.h"

namespace kiln::net {
namespace {

// The pinned namespace at `path`, or an invalid fd when nothing (or no network namespace) is pinned there:
// after a reboot the file is still there but no longer a mount of an nsfs file.
UniqueFd open_pinned(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  if (::ioctl(fd.get(), NS_GET_NSTYPE) != CLONE_NEWNET) return {};
  return fd;
}

// Makes a new network namespace for the calling thread and pins it at `path`.
Result<void> create_pinned(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
  (void)::umount2(path.c_str(), MNT_DETACH);  // a stale pin of a namespace that no longer works
  {
    UniqueFd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0444));
    if (!file) return Error::last_os_error("create " + path);
  }
  if (::unshare(CLONE_NEWNET) != 0) return Error::last_os_error("unshare a network namespace (needs root)");
  if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Error::last_os_error("pin the network namespace at " + path);
  return ok();
}

}  // namespace

Result<std::unique_ptr<NamespaceThread>> NamespaceThread::open_or_create(const std::string& path) {
  auto self = std::make_unique<NamespaceThread>(Key{});
  std::promise<Result<bool>> ready;
  auto started = ready.get_future();
  self->thread_ = std::thread([raw = self.get(), path, &ready] { raw->loop(path, ready); });
  auto created = started.get();
  if (!created) {
    self->thread_.join();
    return created.error();
  }
  self->created_ = *created;
  return self;
}

void NamespaceThread::loop(const std::string& path, std::promise<Result<bool>>& ready) {
  bool created = false;
  if (UniqueFd pinned = open_pinned(path)) {
    if (::setns(pinned.get(), CLONE_NEWNET) != 0) {
      ready.set_value(Error::last_os_error("join the network namespace pinned at " + path));
      return;
    }
  } else {
    if (auto made = create_pinned(path); !made) {
      ready.set_value(made.error());
      return;
    }
    created = true;
  }
  ready.set_value(created);
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    auto work = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    work();
    lock.lock();
  }
}

NamespaceThread::~NamespaceThread() {
  {
    std::lock_guard guard(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<void> NamespaceThread::run(const std::function<Result<void>()>& work) {
  if (std::this_thread::get_id() == thread_.get_id()) return work();  // already inside (nested call)
  std::promise<Result<void>> done;
  auto result = done.get_future();
  {
    std::lock_guard guard(mutex_);
    if (stopping_) return Error::cancelled("the network namespace's thread is stopping");
    queue_.push_back([&work, &done] { done.set_value(work()); });
  }
  wake_.notify_one();
  return result.get();
}

}  // namespace kiln::net

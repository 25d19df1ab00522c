#include "net/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <future>

#include "common/errno_text.h"
#include "common/log.h"

namespace kiln::net {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return Error::last_os_error("epoll_create1");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Error::last_os_error("eventfd");
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = 0;  // token 0: the wake eventfd
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &event) != 0)
    return Error::last_os_error("epoll_ctl");
  auto loop = std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll), std::move(wake)));
  loop->thread_ = std::thread([raw = loop.get()] { raw->run(); });
  return loop;
}

EventLoop::EventLoop(UniqueFd epoll, UniqueFd wake) : epoll_(std::move(epoll)), wake_(std::move(wake)) {}

EventLoop::~EventLoop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof one);
}

void EventLoop::run_sync(const std::function<void()>& task) {
  if (in_loop_thread()) {
    task();
    return;
  }
  std::promise<void> done;
  auto finished = done.get_future();
  post([&] {
    task();
    done.set_value();
  });
  finished.wait();
}

bool EventLoop::in_loop_thread() const {
  return std::this_thread::get_id() == thread_.get_id();
}

Result<EventLoop::Token> EventLoop::watch(int fd, uint32_t events, Handler handler) {
  Token token = next_token_++;
  epoll_event event{};
  event.events = events;
  event.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) return Error::last_os_error("epoll_ctl");
  watches_.emplace(token, Watch{fd, events, std::move(handler)});
  return token;
}

void EventLoop::modify(Token token, uint32_t events) {
  auto it = watches_.find(token);
  if (it == watches_.end() || it->second.events == events) return;
  epoll_event event{};
  event.events = events;
  event.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.fd, &event) != 0) {
    // The fd is ours and registered: failing here is a bug, not a runtime condition.
    log::error("epoll_ctl MOD failed", {{"error", errno_text(errno)}});
    std::abort();
  }
  it->second.events = events;
}

void EventLoop::unwatch(Token token) {
  auto it = watches_.find(token);
  if (it == watches_.end()) return;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  watches_.erase(it);
}

void EventLoop::set_tick(std::chrono::milliseconds interval, std::function<void()> tick) {
  tick_interval_ = interval;
  tick_ = std::move(tick);
  next_tick_ = std::chrono::steady_clock::now() + interval;
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mutex_);
    tasks.swap(posted_);
  }
  for (auto& task : tasks) task();
}

void EventLoop::run() {
  constexpr int kBatch = 64;
  epoll_event events[kBatch];
  for (;;) {
    int timeout = -1;
    if (tick_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick_ -
                                                                        std::chrono::steady_clock::now());
      timeout = left.count() < 0 ? 0 : static_cast<int>(left.count()) + 1;
    }
    int n = ::epoll_wait(epoll_.get(), events, kBatch, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::error("epoll_wait failed", {{"error", errno_text(errno)}});
      std::abort();
    }
    for (int i = 0; i < n; ++i) {
      Token token = events[i].data.u64;
      if (token == 0) {
        uint64_t count;
        (void)::read(wake_.get(), &count, sizeof count);
        continue;
      }
      auto it = watches_.find(token);
      if (it == watches_.end()) continue;  // unwatched earlier in this batch
      // A copy: the handler may unwatch itself, which destroys the stored one.
      Handler handler = it->second.handler;
      handler(events[i].events);
    }
    run_posted();
    if (tick_ && std::chrono::steady_clock::now() >= next_tick_) {
      next_tick_ = std::chrono::steady_clock::now() + tick_interval_;
      tick_();
    }
    std::lock_guard lock(mutex_);
    if (stopping_ && posted_.empty()) return;
  }
}

}  // namespace kiln::net

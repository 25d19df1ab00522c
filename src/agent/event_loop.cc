#include "agent/event_loop.h"

#include <cerrno>

namespace kiln::agent {

Watch::Watch(Watch&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)), id_(std::exchange(other.id_, 0)) {}

Watch& Watch::operator=(Watch&& other) noexcept {
  if (this != &other) {
    reset();
    loop_ = std::exchange(other.loop_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

Result<void> Watch::set_events(uint32_t events) {
  if (!loop_) return Error::internal("set_events on an empty Watch");
  return loop_->set_events(id_, events);
}

void Watch::reset() {
  if (loop_) loop_->remove(id_);
  loop_ = nullptr;
  id_ = 0;
}

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return Error::last_os_error("epoll_create1");
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll)));
}

Result<Watch> EventLoop::watch(int fd, uint32_t events, Handler handler) {
  uint64_t id = next_id_++;
  entries_.emplace(id, Entry{fd, 0, std::move(handler)});
  Watch watch(this, id);
  KILN_TRY(set_events(id, events));
  return watch;
}

Result<void> EventLoop::set_events(uint64_t id, uint32_t events) {
  auto found = entries_.find(id);
  if (found == entries_.end()) return Error::internal("set_events on a removed watch");
  Entry& entry = found->second;
  if (entry.events == events) return ok();
  epoll_event event{};
  event.events = events;
  event.data.u64 = id;
  int op = entry.events == 0 ? EPOLL_CTL_ADD : (events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
  if (::epoll_ctl(epoll_.get(), op, entry.fd, &event) != 0) {
    return Error::last_os_error(fmt::format("epoll_ctl fd {}", entry.fd));
  }
  entry.events = events;
  return ok();
}

void EventLoop::remove(uint64_t id) {
  auto found = entries_.find(id);
  if (found == entries_.end()) return;
  // The owner may already have closed the fd (then the kernel dropped it from epoll): ignore the result.
  if (found->second.events != 0) (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, found->second.fd, nullptr);
  entries_.erase(found);
}

Result<void> EventLoop::run_once(int timeout_ms) {
  epoll_event events[32];
  int ready = ::epoll_wait(epoll_.get(), events, 32, timeout_ms);
  if (ready < 0) {
    if (errno == EINTR) return ok();
    return Error::last_os_error("epoll_wait");
  }
  for (int i = 0; i < ready; ++i) {
    auto found = entries_.find(events[i].data.u64);
    if (found == entries_.end()) continue;  // its Watch went away earlier in this batch
    // A copy: the handler may destroy its own Watch.
    Handler handler = found->second.handler;
    KILN_TRY(handler(events[i].events));
  }
  return ok();
}

}  // namespace kiln::agent

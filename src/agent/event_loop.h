// EventLoop: kiln-agent's single-threaded epoll loop. Each watched fd has a Watch handle that owns the
// registration: destroying the Watch unregisters it, so an object that owns fds and their Watches cannot
// leave a dangling handler behind. Events for a Watch destroyed earlier in the same batch are dropped.
// Everything here runs on the agent's one thread.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

// epoll's flags as plain unsigned values (the enum constants mix badly with 0 in conditionals).
inline constexpr uint32_t kEventIn = EPOLLIN;
inline constexpr uint32_t kEventOut = EPOLLOUT;
// Or'ed into the events: edge-triggered (EPOLLET). The handler runs once per wakeup of the fd's waitqueue
// instead of while the condition holds, e.g. for an fd that stays hung up (POLLHUP) until something
// changes. Adding the watch reports the fd's state at that moment once, so no change before it is lost.
inline constexpr uint32_t kEventEdge = EPOLLET;

class EventLoop;

class Watch {
 public:
  Watch() = default;
  Watch(Watch&& other) noexcept;
  Watch& operator=(Watch&& other) noexcept;
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  ~Watch() { reset(); }

  // The epoll events wanted (EPOLLIN/EPOLLOUT, maybe with kEventEdge). 0 takes the fd out of epoll entirely,
  // because epoll reports EPOLLHUP and EPOLLERR even for an empty mask, which would spin on a hung-up pipe we
  // do not want to read.
  Result<void> set_events(uint32_t events);
  void reset();
  bool active() const { return loop_ != nullptr; }

 private:
  friend class EventLoop;
  Watch(EventLoop* loop, uint64_t id) : loop_(loop), id_(id) {}
  EventLoop* loop_ = nullptr;
  uint64_t id_ = 0;
};

class EventLoop {
 public:
  // Called with the epoll events that fired. An error ends run_once() with that error.
  using Handler = std::function<Result<void>(uint32_t events)>;

  static Result<std::unique_ptr<EventLoop>> create();

  // Watches `fd` (not owned; it must outlive the Watch) for `events`, which may be 0 (parked).
  Result<Watch> watch(int fd, uint32_t events, Handler handler);
  // Waits up to `timeout_ms` (-1: forever) and dispatches what fired.
  Result<void> run_once(int timeout_ms);

 private:
  friend class Watch;
  struct Entry {
    int fd;
    uint32_t events;  // 0: not in epoll
    Handler handler;
  };
  explicit EventLoop(UniqueFd epoll) : epoll_(std::move(epoll)) {}
  Result<void> set_events(uint64_t id, uint32_t events);
  void remove(uint64_t id);

  UniqueFd epoll_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Entry> entries_;
};

}  // namespace kiln::agent

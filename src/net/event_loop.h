// EventLoop: one thread waiting on epoll for the net module's servers (the port proxy, the DNS servers). Fds
// are watched with a handler that runs on the loop thread; other threads hand work over with post() or
// run_sync(). A periodic tick drives timeouts (idle UDP flows, upstream DNS deadlines).
//
// Thread-safety: post(), run_sync() and in_loop_thread() from any thread; watch(), modify(), unwatch() and
// set_tick() only on the loop thread (inside a handler or a posted task). The destructor stops and joins the
// thread; it must not run on the loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::net {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;
  using Token = uint64_t;

  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs `task` on the loop thread soon.
  void post(std::function<void()> task);
  // Runs `task` on the loop thread and waits for it (runs it inline when called on the loop thread).
  void run_sync(const std::function<void()>& task);
  bool in_loop_thread() const;

  // Level-triggered epoll interest in `fd` (EPOLLIN/EPOLLOUT); the handler gets the ready events. A handler
  // may unwatch itself or others (it runs from a copy).
  Result<Token> watch(int fd, uint32_t events, Handler handler);
  void modify(Token token, uint32_t events);
  // Forgets the fd (the caller still owns and closes it, after this call).
  void unwatch(Token token);
  // Calls `tick` about every `interval` (replaces an earlier tick).
  void set_tick(std::chrono::milliseconds interval, std::function<void()> tick);

 private:
  struct Watch {
    int fd;
    uint32_t events;
    Handler handler;
  };
  EventLoop(UniqueFd epoll, UniqueFd wake);
  void run();
  void run_posted();

  UniqueFd epoll_;
  UniqueFd wake_;
  std::thread thread_;
  std::mutex mutex_;  // guards posted_ and stopping_
  std::vector<std::function<void()>> posted_;
  bool stopping_ = false;
  // Loop thread only:
  std::unordered_map<Token, Watch> watches_;
  Token next_token_ = 1;
  std::chrono::milliseconds tick_interval_{0};
  std::function<void()> tick_;
  std::chrono::steady_clock::time_point next_tick_;
};

}  // namespace kiln::net

// EventBus: kilnd's lifecycle events (created, started, paused, resumed, stopped, died, suspended, deleted)
// in order, each with a sequence number, kept in a bounded ring so a subscriber that connects a little late
// (`since`) still sees them. Thread-safe: publishers and any number of waiting readers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "common/json.h"

namespace kiln::daemon {

struct Event {
  uint64_t seq = 0;
  std::string type;    // "vm"
  std::string action;  // "created", "started", ...
  std::string id;
  std::string name;
  std::string time;  // RFC 3339
  int64_t time_nano = 0;
  Json attributes = Json::object();
};
Json to_json(const Event& event);

class EventBus {
 public:
  explicit EventBus(size_t capacity = 4096) : capacity_(capacity) {}

  void publish(Event event);
  // Events with seq > `after`, waiting up to `timeout` for at least one. Returns at once after close().
  std::vector<Event> wait_after(uint64_t after, std::chrono::milliseconds timeout);
  // The seq of the newest event (0 when none).
  uint64_t last_seq() const;
  // Wakes every waiter for good (daemon shutdown).
  void close();
  bool closed() const;
  // Readers blocked in wait_after() right now. For tests that must act only once a reader is asleep, so
  // that only a wake-up (not finding the event already there) can end its wait.
  size_t waiting() const;

 private:
  size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Event> ring_;
  uint64_t next_seq_ = 1;
  bool closed_ = false;
  size_t waiting_ = 0;
};

}  // namespace kiln::daemon

#include "daemon/event_bus.h"

#include <chrono>

#include "daemon/state/vm_record.h"

namespace kiln::daemon {

Json to_json(const Event& event) {
  return {{"seq", event.seq},
          {"type", event.type},
          {"action", event.action},
          {"id", event.id},
          {"name", event.name},
          {"time", event.time},
          {"timeNano", event.time_nano},
          {"attributes", event.attributes}};
}

void EventBus::publish(Event event) {
  {
    std::lock_guard lock(mutex_);
    event.seq = next_seq_++;
    if (event.time.empty()) event.time = now_rfc3339();
    if (event.time_nano == 0) {
      event.time_nano = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    }
    ring_.push_back(std::move(event));
    while (ring_.size() > capacity_) ring_.pop_front();
  }
  changed_.notify_all();
}

std::vector<Event> EventBus::wait_after(uint64_t after, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ++waiting_;
  changed_.wait_for(lock, timeout, [&] { return closed_ || (!ring_.empty() && ring_.back().seq > after); });
  --waiting_;
  std::vector<Event> events;
  for (const auto& event : ring_) {
    if (event.seq > after) events.push_back(event);
  }
  return events;
}

uint64_t EventBus::last_seq() const {
  std::lock_guard lock(mutex_);
  return next_seq_ - 1;
}

void EventBus::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
}

bool EventBus::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

size_t EventBus::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_;
}

}  // namespace kiln::daemon

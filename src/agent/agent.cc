#include "agent/agent.h"

#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "common/log.h"

namespace kiln::agent {

namespace {
// While the host is away and the channel has no wake fd (the port has not appeared yet): how often to look.
constexpr auto kReconnectInterval = std::chrono::milliseconds(250);
// With a wake fd the host's arrival wakes the agent at once; this timer only covers a wakeup the kernel might
// not deliver, so it is slow.
constexpr auto kFallbackInterval = std::chrono::seconds(2);
// Stop reading the host while this much output waits for it: a host that floods requests (pings) without
// reading replies is slowed down instead of growing the agent's memory.
constexpr size_t kMaxOutbound = 4u << 20;
// How long the SHUTDOWN acknowledgement may take to leave before the agent powers off regardless.
constexpr int kShutdownFlushMs = 2000;
constexpr size_t kReadChunk = size_t{64} * 1024;
}  // namespace

Result<std::unique_ptr<Agent>> Agent::create(std::unique_ptr<HostChannel> channel, SessionConfig config) {
  auto loop = KILN_TRY(EventLoop::create());
  auto reaper = KILN_TRY(Reaper::create());
  UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer) return Error::last_os_error("timerfd_create");
  std::unique_ptr<Agent> agent(
      new Agent(std::move(channel), std::move(config), std::move(loop), std::move(reaper), std::move(timer)));
  Agent* self = agent.get();
  agent->reaper_watch_ = KILN_TRY(
      agent->loop_->watch(agent->reaper_->fd(), EPOLLIN, [self](uint32_t) { return self->reaper_->reap(); }));
  agent->timer_watch_ = KILN_TRY(agent->loop_->watch(agent->timer_.get(), 0, [self](uint32_t) {
    uint64_t expirations;
    (void)!::read(self->timer_.get(), &expirations, sizeof expirations);
    return self->on_wait_event();
  }));
  return agent;
}

Result<AgentOutcome> Agent::run() {
  KILN_TRY(try_connect());
  for (;;) {
    KILN_TRY(loop_->run_once(-1));
    KILN_TRY(after_events());
    if (session_ && session_->shutdown_requested()) {
      bool reboot = session_->shutdown_requested()->reboot;
      KILN_TRY(acknowledge_shutdown());
      return AgentOutcome{AgentOutcome::Kind::kShutdown, reboot};
    }
    if (host_gone_) return AgentOutcome{AgentOutcome::Kind::kHostGone, false};
  }
}

Result<void> Agent::try_connect() {
  auto connected = channel_->connect();
  if (!connected) {
    if (!channel_->reconnects()) {
      host_gone_ = true;
      return ok();
    }
    // The port may appear later (or the sysfs read was transient): keep looking, loudly.
    log::warn("agent channel not usable yet", {{"error", connected.error().message()}});
    return set_waiting(true);
  }
  if (!*connected) return set_waiting(true);
  channel_fd_ = std::move(**connected);
  // A session detached from an earlier host keeps its processes for this one.
  if (!session_) session_ = std::make_unique<Session>(*loop_, *reaper_, config_);
  channel_watch_ = KILN_TRY(
      loop_->watch(channel_fd_.get(), EPOLLIN, [this](uint32_t events) { return on_channel_ready(events); }));
  log::info("agent channel open; waiting for HELLO");
  return set_waiting(false);
}

Result<void> Agent::on_wait_event() {
  // The timer and the wake fd can fire in the same batch as the connection they announce.
  if (!waiting_) return ok();
  return try_connect();
}

// Called after every connect() attempt: the channel may have gained its wake fd since the last one.
Result<void> Agent::set_waiting(bool waiting) {
  waiting_ = waiting;
  int wake_fd = waiting ? channel_->wake_fd() : -1;
  if (wake_fd != wake_fd_) {
    wake_watch_.reset();
    wake_fd_ = -1;
    if (wake_fd >= 0) {
      // Edge-triggered: the port polls POLLHUP for as long as the host is away, and the host's open wakes its
      // waitqueue. Adding the watch reports the state of this moment once, so an open that raced the
      // connect() just before is not missed.
      wake_watch_ = KILN_TRY(loop_->watch(wake_fd, kEventIn | kEventOut | kEventEdge,
                                          [this](uint32_t) { return on_wait_event(); }));
      wake_fd_ = wake_fd;
    }
  }
  std::chrono::nanoseconds interval{0};
  if (waiting) interval = wake_fd >= 0 ? std::chrono::nanoseconds(kFallbackInterval) : kReconnectInterval;
  if (interval == timer_interval_) return ok();
  timer_interval_ = interval;
  itimerspec spec{};
  spec.it_interval.tv_sec = static_cast<time_t>(interval.count() / 1'000'000'000);
  spec.it_interval.tv_nsec = static_cast<long>(interval.count() % 1'000'000'000);
  spec.it_value = spec.it_interval;
  if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0) return Error::last_os_error("timerfd_settime");
  return timer_watch_.set_events(waiting ? kEventIn : 0u);
}

Result<void> Agent::on_channel_ready(uint32_t events) {
  if (!session_ || !channel_fd_) return ok();
  if (events & EPOLLOUT) {
    if (auto flushed = session_->outbound().flush(channel_fd_.get()); !flushed) {
      end_session(flushed.error().message());
      return ok();
    }
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buffer[kReadChunk];
    ssize_t n = ::read(channel_fd_.get(), buffer, sizeof buffer);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return ok();
    if (n <= 0) {
      end_session(n == 0 ? "host closed the channel" : Error::last_os_error("read agent channel").message());
      return ok();
    }
    if (auto handled = session_->on_bytes(std::string_view(buffer, static_cast<size_t>(n))); !handled) {
      // The ERROR frame is queued; give it a chance to leave before the session is dropped.
      (void)session_->outbound().flush(channel_fd_.get());
      end_session(handled.error().message());
    }
  }
  return ok();
}

Result<void> Agent::after_events() {
  if (!session_) return ok();
  session_->collect_finished();
  if (!channel_fd_) return ok();  // detached: kept processes' frames are held until a host returns
  if (!session_->outbound().empty()) {
    if (auto flushed = session_->outbound().flush(channel_fd_.get()); !flushed) {
      end_session(flushed.error().message());
      return ok();
    }
  }
  uint32_t events = (session_->outbound().pending() < kMaxOutbound ? kEventIn : 0u) |
                    (session_->outbound().empty() ? 0u : kEventOut);
  return channel_watch_.set_events(events);
}

void Agent::end_session(std::string_view why) {
  channel_watch_.reset();
  channel_fd_.reset();
  if (session_ && session_->keeps_processes() && channel_->reconnects()) {
    log::info("host session ended", {{"reason", why}});
    session_->detach();
  } else {
    size_t killed = session_ ? session_->process_count() : 0;
    log::info("host session ended", {{"reason", why}, {"killed", killed}});
    session_.reset();
  }
  if (!channel_->reconnects()) {
    host_gone_ = true;
    return;
  }
  if (auto waiting = set_waiting(true); !waiting) {
    log::error("cannot arm the reconnect timer", {{"error", waiting.error().message()}});
  }
}

Result<void> Agent::acknowledge_shutdown() {
  log::info("shutdown requested");
  session_->outbound().clear();
  size_t killed = session_->process_count();
  channel_watch_.reset();
  UniqueFd fd = std::move(channel_fd_);
  FrameWriter ack;
  session_.reset();  // kills every process of the session
  ::sync();
  ack.push(MessageType::kShutdown, kConnectionStream, "");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kShutdownFlushMs);
  while (!ack.empty() && std::chrono::steady_clock::now() < deadline) {
    if (!ack.flush(fd.get())) break;
    pollfd out{fd.get(), POLLOUT, 0};
    (void)::poll(&out, 1, 100);
  }
  log::info("filesystems synced", {{"killed", killed}});
  return ok();
}

}  // namespace kiln::agent

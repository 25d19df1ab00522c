// Agent: kiln-agent's main loop. One thread, one epoll loop over the host channel, the Reaper's signalfd,
// every process's pipes or pty, and (while the host is away) the channel's wake fd, edge-triggered, plus a
// reconnect timer (fast while there is no wake fd yet, a slow safety net once there is). It owns one Session
// per host connection; when the connection ends the session's processes are killed and, if the channel can
// come back (the virtio port), the agent waits for the next host. Agent thread only.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "agent/event_loop.h"
#include "agent/host_channel.h"
#include "agent/reaper.h"
#include "agent/session.h"

namespace kiln::agent {

// Why run() returned.
struct AgentOutcome {
  enum class Kind { kShutdown, kHostGone } kind = Kind::kHostGone;
  bool reboot = false;  // with kShutdown: the host asked for a reboot instead of power-off
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> create(std::unique_ptr<HostChannel> channel,
                                               SessionConfig config = {});

  // Serves hosts until a SHUTDOWN (processes killed, filesystems synced, acknowledged) or, for a channel
  // that does not reconnect, until it closes.
  Result<AgentOutcome> run();

 private:
  Agent(std::unique_ptr<HostChannel> channel, SessionConfig config, std::unique_ptr<EventLoop> loop,
        std::unique_ptr<Reaper> reaper, UniqueFd timer)
      : config_(std::move(config)),
        channel_(std::move(channel)),
        loop_(std::move(loop)),
        reaper_(std::move(reaper)),
        timer_(std::move(timer)) {}
  Result<void> try_connect();
  // Wakeups of the channel's wake fd or the timer: look for the host unless connected meanwhile.
  Result<void> on_wait_event();
  Result<void> on_channel_ready(uint32_t events);
  Result<void> after_events();
  void end_session(std::string_view why);
  Result<void> set_waiting(bool waiting);
  Result<void> acknowledge_shutdown();

  const SessionConfig config_;  // sessions hold a reference: declared before them
  std::unique_ptr<HostChannel> channel_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Reaper> reaper_;
  Watch reaper_watch_;
  UniqueFd timer_;  // periodic while waiting for a host
  Watch timer_watch_;
  std::chrono::nanoseconds timer_interval_{0};  // as armed; 0: disarmed
  int wake_fd_ = -1;                            // the channel's wake fd, watched while waiting
  Watch wake_watch_;
  bool waiting_ = false;
  bool host_gone_ = false;

  // The current connection. The session is declared after the fd and watch: its processes die first.
  UniqueFd channel_fd_;
  Watch channel_watch_;
  std::unique_ptr<Session> session_;
};

}  // namespace kiln::agent

// Session: the agent's protocol state for one host connection: the HELLO handshake, the processes the host
// started (by the ids it chose), and the frames queued for the host. It never touches the channel fd: the
// Agent feeds it bytes and flushes `outbound()`. A new HELLO starts over (processes of the old session are
// killed), which is how a host that reconnected quickly resynchronizes. Agent thread only.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

#include "agent/event_loop.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/frame_writer.h"
#include "agent/protocol/messages.h"
#include "agent/reaper.h"
#include "agent/supervised_process.h"

namespace kiln::agent {

// Processes one session may run at once: bounds what a confused host can make the agent hold.
inline constexpr size_t kMaxProcesses = 1024;

// What every session of this agent reports and may do; fixed for the agent's life.
struct SessionConfig {
  // PID 1 of a guest: MOUNT and UNMOUNT act. Serving a socket on a host (--serve-fd), they are validated and
  // then refused, so no test can mount anything on the machine it runs on.
  bool guest_system = false;
  std::optional<RootDiskStatus> root;  // for HELLO_REPLY: what became of kiln.root= at boot
};

class Session {
 public:
  Session(EventLoop& loop, Reaper& reaper, const SessionConfig& config)
      : loop_(loop), reaper_(reaper), config_(config) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Decodes and handles the bytes. An error means the stream is out of sync (a framing error, already
  // reported to the host as an ERROR frame): the session must end.
  Result<void> on_bytes(std::string_view bytes);
  // Frames for the host, in order.
  FrameWriter& outbound() { return outbound_; }
  // Drops processes whose EXIT is queued. Call after each batch of events.
  void collect_finished();
  // Set once the host asked for SHUTDOWN.
  const std::optional<ShutdownRequest>& shutdown_requested() const { return shutdown_; }
  size_t process_count() const { return processes_.size(); }

  // Processes to keep when the host goes away (keep_on_disconnect), or output still held for one.
  bool keeps_processes() const;
  // The host's channel is gone: processes not kept are killed; the kept ones run on, their frames (those
  // not yet wholly sent included) held per process until a new host's REATTACH. The next bytes are a new
  // host's, starting with HELLO.
  void detach();

 private:
  void handle(Frame frame);
  void handle_hello(const Frame& frame);
  void handle_run(const Frame& frame);
  void handle_process_frame(const Frame& frame, SupervisedProcess& process);
  void handle_mount(const Frame& frame);
  void handle_unmount(const Frame& frame);
  void handle_set_clock(const Frame& frame);
  void handle_set_hostname(const Frame& frame);
  void handle_clone_init(const Frame& frame);
  void handle_configure_network(const Frame& frame);
  void handle_reattach(const Frame& frame);
  // A MOUNT/UNMOUNT id must be a fresh one: not 0, not a running process's.
  Result<void> check_request_id(const Frame& frame) const;
  void send_error(StreamId stream, const Error& error);

  EventLoop& loop_;
  Reaper& reaper_;
  const SessionConfig& config_;
  FrameDecoder decoder_;
  FrameWriter outbound_;
  bool hello_done_ = false;
  std::optional<ShutdownRequest> shutdown_;
  std::map<StreamId, std::unique_ptr<SupervisedProcess>> processes_;
  // Kept processes of an earlier host session, not yet taken over by REATTACH, and their held frames (a
  // process that exited meanwhile has only its held frames, EXIT last).
  std::set<StreamId> parked_;
  std::map<StreamId, FrameWriter> held_;
  // The recent output of kept processes that exited while parked (their objects are gone).
  std::map<StreamId, std::array<OutputReplay, 2>> exited_replay_;
};

}  // namespace kiln::agent

// AgentConnection: the host's end of one kiln-agent channel (the connected unix socket of QEMU's chardev for
// the guest's "kiln.agent" port, or a socketpair in tests). It speaks the protocol in src/agent/protocol:
// HELLO on connect, then any number of processes multiplexed by ids this side picks, with per-stream credit
// so neither side buffers more than a window per stream. Non-blocking inside; the blocking helpers
// (connect, start_process, ping, shutdown) pump the channel until their answer or deadline. One owner
// thread; attach_process() (attach.h) is the usual way to run a process to completion.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/protocol/flow_control.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/frame_writer.h"
#include "agent/protocol/messages.h"
#include "common/child_process.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

// A process on the agent, named by the id this side chose (a protocol stream id, never 0).
using ProcessId = StreamId;

enum class OutputStream { kStdout = 0, kStderr = 1 };

class AgentConnection {
 public:
  // Takes a connected channel and does the HELLO exchange. kTimeout if the agent does not answer in time,
  // kUnsupported on a protocol major-version mismatch, kUnavailable if the channel closes.
  static Result<std::unique_ptr<AgentConnection>> connect(UniqueFd channel,
                                                          std::chrono::milliseconds timeout);

  AgentConnection(const AgentConnection&) = delete;
  AgentConnection& operator=(const AgentConnection&) = delete;

  // What the agent said about itself in HELLO_REPLY.
  const HelloReply& agent_info() const { return agent_info_; }
  bool has_capability(std::string_view capability) const;

  // Starts `spec` and waits for STARTED. A process that cannot start returns the agent's error with its
  // category: kNotFound for "exec foo: No such file or directory" (a shell's 127), kPermissionDenied for
  // "Permission denied" (126), kInvalidArgument for a bad cwd/uid/gid.
  Result<ProcessId> start_process(const ProcessSpec& spec,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Takes over a process an earlier host started with keep_on_disconnect (agent_info().kept_processes):
  // its held output follows, then it is like one this connection started. kNotFound when the agent kept
  // no such process.
  Result<void> reattach_process(ProcessId id, const ReattachRequest& request = {},
                                std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Queues as much of `data` as the process's stdin credit allows; returns how much was taken (0 when out
  // of credit: pump until stdin_credit() grows).
  Result<size_t> write_stdin(ProcessId id, std::string_view data);
  size_t stdin_credit(ProcessId id) const;
  Result<void> close_stdin(ProcessId id);
  // Signals the process (with a tty: its foreground process group). A process that already exited: no-op.
  Result<void> send_signal(ProcessId id, int signum);
  Result<void> resize(ProcessId id, TtySize size);

  // Output received and not yet consumed. Valid until the next call on this connection.
  std::string_view pending_output(ProcessId id, OutputStream stream) const;
  // Marks the first `bytes` of pending_output() delivered, which grants the agent that much credit back.
  void consume_output(ProcessId id, OutputStream stream, size_t bytes);
  // Set once EXIT arrived; all of the process's output arrived before it.
  std::optional<ExitStatus> exit_status(ProcessId id) const;
  // The first error the agent reported about this process after it started (e.g. a window overrun).
  std::optional<Error> process_error(ProcessId id) const;
  // Forgets a process (call after its exit); later agent messages about it are ignored.
  void release(ProcessId id);

  // Mounts a filesystem in the guest; the agent creates the target directory. The agent's error comes back
  // with its category: kInvalidArgument for a relative target or one with "..", the errno's for a failed
  // mount(2). kUnsupported, with nothing sent, if the agent lacks the "mount" capability (an agent that
  // does not know the message would end the session).
  Result<void> mount(const MountRequest& request,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));
  Result<void> unmount(const std::string& target,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Sets the guest's wall clock to the host's (after a restore or a pause, when the guest's clock stood
  // still). kUnsupported, with nothing sent, from agents without the "clock" capability.
  Result<void> set_clock(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The guest's hostname (capability "hostname"; kUnsupported from older agents).
  Result<void> set_hostname(const std::string& hostname,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Gives a VM forked from a template its own identity (capability "clone_init"; kUnsupported, with nothing
  // sent, from older agents): wall clock, hostname, a reseeded kernel RNG, machine id, then `mounts`. An
  // unset unix_nanos is this host's clock now, and an empty seed (with reseed) 32 bytes of this host's
  // getrandom(). Bad values are refused here (kInvalidArgument) before anything is sent; a mount that fails
  // in the guest returns its MOUNT error, naming the mount. The reply says how long each step took in the
  // guest (empty from agents before protocol 1.9).
  Result<CloneInitReply> clone_init(CloneInitRequest request,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Configures the guest's NICs (capability "network"; kUnsupported, with nothing sent, from older agents).
  // Bad values are refused here (kInvalidArgument) before anything is sent.
  Result<void> configure_network(const NetworkConfigRequest& request,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Round trip to the agent.
  Result<void> ping(std::chrono::milliseconds timeout);
  // Asks the agent to kill every process, sync and power off (or reboot); returns once it acknowledged.
  Result<void> shutdown(bool reboot, std::chrono::milliseconds timeout);
  // Errors the agent reported for the connection or for ids this side never used, oldest first.
  std::vector<Error> take_agent_errors() { return std::exchange(agent_errors_, {}); }

  // For callers with their own poll loop: the fd, the events to poll it for, and the handler.
  int fd() const { return channel_.get(); }
  short poll_events() const;
  // Reads what is there, dispatches it, flushes queued frames. kUnavailable ("lost connection to the VM's
  // agent") once the channel closed; kProtocol if the agent broke the protocol (the connection is then dead).
  Result<void> on_ready(short revents);
  // poll() up to `timeout` and on_ready(). Returns ok on timeout.
  Result<void> pump(std::chrono::milliseconds timeout);

 private:
  struct RemoteProcess {
    bool started = false;
    std::optional<Error> start_error;
    std::optional<Error> error;
    std::optional<ExitStatus> exit;
    std::string output[2];
    size_t output_consumed[2] = {0, 0};
    ReceiveWindow output_window[2];
    SendWindow stdin_window;
  };

  // A one-shot request (MOUNT, UNMOUNT) on an id of its own, answered by `reply` or ERROR on that id.
  struct PendingRequest {
    MessageType reply;
    bool done = false;
    std::optional<Error> error;
    std::string payload;  // the reply's
  };

  explicit AgentConnection(UniqueFd channel) : channel_(std::move(channel)) {}
  Result<void> request(MessageType type, MessageType reply, const std::string& payload, std::string_view what,
                       std::chrono::milliseconds timeout);
  // request(), giving back the reply's payload.
  Result<std::string> request_reply(MessageType type, MessageType reply, const std::string& payload,
                                    std::string_view what, std::chrono::milliseconds timeout);
  Result<void> dispatch_request_frame(const Frame& frame, PendingRequest& request);
  Result<void> handshake(std::chrono::milliseconds timeout);
  Result<void> dispatch(Frame frame);
  Result<void> dispatch_process_frame(Frame& frame, RemoteProcess& process);
  Result<void> flush();
  Result<void> fail(Error error);
  Result<RemoteProcess*> running(ProcessId id);
  const RemoteProcess* find(ProcessId id) const;
  // Pumps until `done()` or the deadline.
  template <typename Done>
  Result<void> pump_until(Done done, std::chrono::milliseconds timeout, std::string_view what);
  // Pumps until the agent answered RUN or REATTACH for `id` (STARTED, REATTACH_REPLY or an ERROR); the
  // process is forgotten on failure (after a SIGKILL on timeout with `kill_on_timeout`).
  Result<void> await_started(ProcessId id, std::chrono::milliseconds timeout, std::string what,
                             bool kill_on_timeout);

  UniqueFd channel_;
  FrameDecoder decoder_;
  FrameWriter outbound_;
  std::optional<Error> broken_;  // set once the connection is unusable
  HelloReply agent_info_;
  bool hello_done_ = false;
  std::optional<Error> hello_error_;
  ProcessId next_id_ = 1;
  std::map<ProcessId, RemoteProcess> processes_;
  std::map<StreamId, PendingRequest> requests_;  // ids come from next_id_ too
  uint64_t pings_sent_ = 0;
  uint64_t pongs_received_ = 0;
  bool shutdown_acknowledged_ = false;
  std::vector<Error> agent_errors_;
};

}  // namespace kiln::agent

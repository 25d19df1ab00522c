#include "agent/client/agent_connection.h"

#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "common/log.h"
#include "kiln/version.h"

namespace kiln::agent {

namespace {
constexpr size_t kReadChunk = size_t{64} * 1024;
// Data frames carry at most this much, well under kMaxPayload, so credit returns in steady steps.
constexpr size_t kMaxDataFrame = size_t{64} * 1024;

Error lost_connection() {
  return Error::unavailable("lost connection to the VM's agent");
}

Error to_error(const ErrorReply& reply) {
  return Error(reply.category, reply.message);
}
}  // namespace

Result<std::unique_ptr<AgentConnection>> AgentConnection::connect(UniqueFd channel,
                                                                  std::chrono::milliseconds timeout) {
  if (!channel) return Error::invalid_argument("agent connection: no channel fd");
  KILN_TRY(set_nonblocking(channel.get()));
  std::unique_ptr<AgentConnection> connection(new AgentConnection(std::move(channel)));
  KILN_TRY(connection->handshake(timeout));
  return connection;
}

Result<void> AgentConnection::handshake(std::chrono::milliseconds timeout) {
  outbound_.push(MessageType::kHello, kConnectionStream,
                 encode(HelloRequest{kProtocolVersion, fmt::format("kiln {}", kVersion)}));
  KILN_TRY(pump_until([this] { return hello_done_ || hello_error_.has_value(); }, timeout, "HELLO"));
  if (hello_error_) return *hello_error_;
  if (agent_info_.version.major != kProtocolVersion.major) {
    return fail(Error::unsupported(fmt::format("the VM's agent speaks protocol {}.{}; this host speaks {}.{}",
                                               agent_info_.version.major, agent_info_.version.minor,
                                               kProtocolVersion.major, kProtocolVersion.minor)));
  }
  return ok();
}

template <typename Done>
Result<void> AgentConnection::pump_until(Done done, std::chrono::milliseconds timeout,
                                         std::string_view what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  KILN_TRY(flush());
  while (!done()) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Error::timeout(
          fmt::format("the VM's agent did not answer {} within {} ms", what, timeout.count()));
    }
    KILN_TRY(pump(left));
  }
  return ok();
}

short AgentConnection::poll_events() const {
  return static_cast<short>(POLLIN | (outbound_.empty() ? 0 : POLLOUT));
}

Result<void> AgentConnection::pump(std::chrono::milliseconds timeout) {
  if (broken_) return *broken_;
  pollfd channel{channel_.get(), poll_events(), 0};
  int ready = ::poll(&channel, 1, static_cast<int>(std::min<int64_t>(timeout.count(), INT32_MAX)));
  if (ready < 0 && errno != EINTR) return Error::last_os_error("poll agent channel");
  if (ready <= 0) return ok();
  return on_ready(channel.revents);
}

Result<void> AgentConnection::fail(Error error) {
  if (!broken_) broken_ = error;
  return error;
}

Result<void> AgentConnection::flush() {
  if (broken_) return *broken_;
  if (auto flushed = outbound_.flush(channel_.get()); !flushed) {
    return fail(flushed.error().category() == ErrorCategory::kUnavailable ? lost_connection()
                                                                          : flushed.error());
  }
  return ok();
}

Result<void> AgentConnection::on_ready(short revents) {
  if (broken_) return *broken_;
  if (revents & POLLOUT) KILN_TRY(flush());
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    char buffer[kReadChunk];
    ssize_t n = ::read(channel_.get(), buffer, sizeof buffer);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return fail(errno == ECONNRESET ? lost_connection() : Error::last_os_error("read agent channel"));
    }
    if (n == 0) return fail(lost_connection());
    if (n > 0) {
      decoder_.feed(std::string_view(buffer, static_cast<size_t>(n)));
      for (;;) {
        auto frame = decoder_.next();
        if (!frame) return fail(frame.error().with_context("from the VM's agent"));
        if (!*frame) break;
        KILN_TRY(dispatch(std::move(**frame)));
      }
    }
  }
  return flush();
}

Result<void> AgentConnection::dispatch(Frame frame) {
  switch (frame.type) {
    case MessageType::kHelloReply: {
      auto reply = decode_hello_reply(frame.payload);
      if (!reply) return fail(reply.error());
      agent_info_ = std::move(reply).value();
      hello_done_ = true;
      // Ids of kept processes stay taken: new ones are allocated above them.
      for (uint32_t kept : agent_info_.kept_processes) next_id_ = std::max<ProcessId>(next_id_, kept + 1);
      return ok();
    }
    case MessageType::kPing:
      outbound_.push(MessageType::kPong, frame.stream, frame.payload);
      return ok();
    case MessageType::kPong: {
      uint64_t number = 0;
      std::from_chars(frame.payload.data(), frame.payload.data() + frame.payload.size(), number);
      pongs_received_ = std::max(pongs_received_, number);
      return ok();
    }
    case MessageType::kShutdown:
      shutdown_acknowledged_ = true;
      return ok();
    default:
      break;
  }
  if (!hello_done_) {
    // Before our HELLO is answered only a connection error matters: frames of an earlier session are stale.
    if (frame.type == MessageType::kError && frame.stream == kConnectionStream) {
      auto reply = decode_error_reply(frame.payload);
      hello_error_ = reply ? to_error(*reply) : reply.error();
    }
    return ok();
  }
  if (auto request = requests_.find(frame.stream); request != requests_.end()) {
    return dispatch_request_frame(frame, request->second);
  }
  auto found = processes_.find(frame.stream);
  if (found == processes_.end()) {
    if (frame.type == MessageType::kError) {
      if (frame.stream != kConnectionStream && frame.stream < next_id_)
        return ok();  // about a released process
      auto reply = decode_error_reply(frame.payload);
      agent_errors_.push_back(reply ? to_error(*reply) : reply.error());
      return ok();
    }
    // Output racing a release() is harmless; anything about an id never used is the agent's bug.
    if (frame.stream != kConnectionStream && frame.stream < next_id_) return ok();
    return fail(Error::protocol(
        fmt::format("the VM's agent sent {} for unknown stream {}", to_string(frame.type), frame.stream)));
  }
  return dispatch_process_frame(frame, found->second);
}

Result<void> AgentConnection::dispatch_request_frame(const Frame& frame, PendingRequest& request) {
  if (request.done) return ok();
  if (frame.type == request.reply) {
    request.done = true;
    request.payload = frame.payload;
    return ok();
  }
  if (frame.type == MessageType::kError) {
    auto reply = decode_error_reply(frame.payload);
    request.error = reply ? to_error(*reply) : reply.error();
    request.done = true;
    return ok();
  }
  return fail(Error::protocol(fmt::format("the VM's agent answered request {} with {}, not {}", frame.stream,
                                          to_string(frame.type), to_string(request.reply))));
}

Result<void> AgentConnection::dispatch_process_frame(Frame& frame, RemoteProcess& process) {
  switch (frame.type) {
    case MessageType::kStarted:
    case MessageType::kReattachReply:
      process.started = true;
      return ok();
    case MessageType::kError: {
      auto reply = decode_error_reply(frame.payload);
      Error error = reply ? to_error(*reply) : reply.error();
      if (!process.started) {
        process.start_error = error;
      } else if (!process.exit && !process.error) {
        process.error = error;
      }
      return ok();
    }
    case MessageType::kExit: {
      auto status = decode_exit_status(frame.payload);
      if (!status) return fail(status.error());
      process.exit = *status;
      return ok();
    }
    case MessageType::kStdout:
    case MessageType::kStderr: {
      int index = frame.type == MessageType::kStdout ? 0 : 1;
      if (auto received = process.output_window[index].on_received(frame.payload.size()); !received) {
        return fail(received.error().with_context(
            fmt::format("process {} {}", frame.stream, index == 0 ? "stdout" : "stderr")));
      }
      process.output[index].append(frame.payload);
      return ok();
    }
    case MessageType::kCredit: {
      auto grant = decode_credit_grant(frame.payload);
      if (!grant) return fail(grant.error());
      if (grant->channel != DataChannel::kStdin)
        return fail(Error::protocol("agent granted credit for output"));
      if (auto granted = process.stdin_window.grant(grant->bytes); !granted) return fail(granted.error());
      return ok();
    }
    default:
      return fail(Error::protocol(
          fmt::format("the VM's agent sent {}, which only the host sends", to_string(frame.type))));
  }
}

Result<ProcessId> AgentConnection::start_process(const ProcessSpec& spec, std::chrono::milliseconds timeout) {
  if (broken_) return *broken_;
  if (spec.builtin && !has_capability("file_builtins"))
    return Error::unsupported("the VM's agent has no file builtins (it predates protocol 1.7)");
  if (spec.argv.empty() && !spec.builtin) return Error::invalid_argument("start_process: empty argv");
  ProcessId id = next_id_++;
  processes_.try_emplace(id);  // a fresh record for the id
  outbound_.push(MessageType::kRun, id, encode(spec));
  KILN_TRY(await_started(id, timeout, fmt::format("RUN {}", spec.builtin ? spec.builtin->name : spec.argv[0]),
                         true));
  return id;
}

Result<void> AgentConnection::await_started(ProcessId id, std::chrono::milliseconds timeout, std::string what,
                                            bool kill_on_timeout) {
  RemoteProcess& process = processes_[id];
  auto waited =
      pump_until([&process] { return process.started || process.start_error.has_value(); }, timeout, what);
  if (!waited) {
    if (kill_on_timeout && waited.error().category() == ErrorCategory::kTimeout)
      (void)send_signal(id, SIGKILL);
    processes_.erase(id);
    return std::move(waited).error();
  }
  if (process.start_error) {
    Error error = *process.start_error;
    processes_.erase(id);
    return error;
  }
  return ok();
}

Result<void> AgentConnection::reattach_process(ProcessId id, const ReattachRequest& request,
                                               std::chrono::milliseconds timeout) {
  if (broken_) return *broken_;
  if (processes_.contains(id))
    return Error::already_exists(fmt::format("process {} is attached already", id));
  processes_.try_emplace(id);  // a fresh record for the id
  outbound_.push(MessageType::kReattach, id, encode(request));
  return await_started(id, timeout, fmt::format("REATTACH {}", id), false);
}

const AgentConnection::RemoteProcess* AgentConnection::find(ProcessId id) const {
  auto found = processes_.find(id);
  return found == processes_.end() ? nullptr : &found->second;
}

Result<AgentConnection::RemoteProcess*> AgentConnection::running(ProcessId id) {
  if (broken_) return *broken_;
  auto found = processes_.find(id);
  if (found == processes_.end()) return Error::not_found(fmt::format("no process with id {}", id));
  return &found->second;
}

Result<size_t> AgentConnection::write_stdin(ProcessId id, std::string_view data) {
  RemoteProcess* process = KILN_TRY(running(id));
  if (process->exit) return data.size();  // nobody reads it any more: drop, as a closed pipe would
  size_t taken = std::min<size_t>(data.size(), process->stdin_window.available());
  for (size_t offset = 0; offset < taken; offset += kMaxDataFrame) {
    size_t piece = std::min(kMaxDataFrame, taken - offset);
    outbound_.push(MessageType::kStdin, id, data.substr(offset, piece));
  }
  process->stdin_window.consume(taken);
  KILN_TRY(flush());
  return taken;
}

size_t AgentConnection::stdin_credit(ProcessId id) const {
  const RemoteProcess* process = find(id);
  return process ? process->stdin_window.available() : 0;
}

Result<void> AgentConnection::close_stdin(ProcessId id) {
  RemoteProcess* process = KILN_TRY(running(id));
  if (process->exit) return ok();
  outbound_.push(MessageType::kCloseStdin, id, "");
  return flush();
}

Result<void> AgentConnection::send_signal(ProcessId id, int signum) {
  RemoteProcess* process = KILN_TRY(running(id));
  if (process->exit) return ok();
  outbound_.push(MessageType::kSignal, id, encode(SignalRequest{signum}));
  return flush();
}

Result<void> AgentConnection::resize(ProcessId id, TtySize size) {
  RemoteProcess* process = KILN_TRY(running(id));
  if (process->exit) return ok();
  outbound_.push(MessageType::kResize, id, encode(size));
  return flush();
}

std::string_view AgentConnection::pending_output(ProcessId id, OutputStream stream) const {
  const RemoteProcess* process = find(id);
  if (!process) return {};
  int index = static_cast<int>(stream);
  return std::string_view(process->output[index]).substr(process->output_consumed[index]);
}

void AgentConnection::consume_output(ProcessId id, OutputStream stream, size_t bytes) {
  auto found = processes_.find(id);
  if (found == processes_.end()) return;
  RemoteProcess& process = found->second;
  int index = static_cast<int>(stream);
  bytes = std::min(bytes, process.output[index].size() - process.output_consumed[index]);
  process.output_consumed[index] += bytes;
  // Compact once the consumed prefix dominates, so consuming in small steps stays linear.
  if (process.output_consumed[index] >= process.output[index].size() / 2) {
    process.output[index].erase(0, process.output_consumed[index]);
    process.output_consumed[index] = 0;
  }
  uint32_t grant = process.output_window[index].on_consumed(bytes);
  if (grant > 0 && !process.exit && !broken_) {
    DataChannel channel = stream == OutputStream::kStdout ? DataChannel::kStdout : DataChannel::kStderr;
    outbound_.push(MessageType::kCredit, id, encode(CreditGrant{channel, grant}));
    (void)flush();  // a failure marks the connection broken; the next call reports it
  }
}

std::optional<ExitStatus> AgentConnection::exit_status(ProcessId id) const {
  const RemoteProcess* process = find(id);
  return process ? process->exit : std::nullopt;
}

std::optional<Error> AgentConnection::process_error(ProcessId id) const {
  const RemoteProcess* process = find(id);
  return process ? process->error : std::nullopt;
}

void AgentConnection::release(ProcessId id) {
  processes_.erase(id);
}

bool AgentConnection::has_capability(std::string_view capability) const {
  return std::find(agent_info_.capabilities.begin(), agent_info_.capabilities.end(), capability) !=
         agent_info_.capabilities.end();
}

Result<void> AgentConnection::request(MessageType type, MessageType reply, const std::string& payload,
                                      std::string_view what, std::chrono::milliseconds timeout) {
  KILN_TRY(request_reply(type, reply, payload, what, timeout));
  return ok();
}

Result<std::string> AgentConnection::request_reply(MessageType type, MessageType reply,
                                                   const std::string& payload, std::string_view what,
                                                   std::chrono::milliseconds timeout) {
  if (broken_) return *broken_;
  StreamId id = next_id_++;
  PendingRequest& pending = requests_.emplace(id, PendingRequest{.reply = reply}).first->second;
  outbound_.push(type, id, payload);
  auto waited = pump_until([&pending] { return pending.done; }, timeout, what);
  std::optional<Error> error = pending.error;
  std::string answer = std::move(pending.payload);
  requests_.erase(id);  // a late answer is then ignored, like output for a released process
  if (!waited) return std::move(waited).error();
  if (error) return *error;
  return answer;
}

Result<void> AgentConnection::mount(const MountRequest& request, std::chrono::milliseconds timeout) {
  if (!has_capability("mount")) {
    return Error::unsupported(
        "the VM's agent cannot mount filesystems (it predates the \"mount\" capability)");
  }
  return this->request(MessageType::kMount, MessageType::kMountReply, encode(request),
                       fmt::format("MOUNT {}", request.target), timeout);
}

Result<void> AgentConnection::unmount(const std::string& target, std::chrono::milliseconds timeout) {
  if (!has_capability("mount")) {
    return Error::unsupported(
        "the VM's agent cannot unmount filesystems (it predates the \"mount\" capability)");
  }
  return request(MessageType::kUnmount, MessageType::kUnmountReply, encode(UnmountRequest{target}),
                 fmt::format("UNMOUNT {}", target), timeout);
}

Result<void> AgentConnection::set_clock(std::chrono::milliseconds timeout) {
  if (!has_capability("clock")) return Error::unsupported("the VM's agent cannot set the guest clock");
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  return request(MessageType::kSetClock, MessageType::kSetClockReply, encode(SetClockRequest{now}),
                 "SET_CLOCK", timeout);
}

Result<void> AgentConnection::set_hostname(const std::string& hostname, std::chrono::milliseconds timeout) {
  if (!has_capability("hostname")) return Error::unsupported("the VM's agent cannot set the guest hostname");
  KILN_TRY(validate_hostname(hostname));
  return request(MessageType::kSetHostname, MessageType::kSetHostnameReply,
                 encode(SetHostnameRequest{hostname}), "SET_HOSTNAME", timeout);
}

Result<CloneInitReply> AgentConnection::clone_init(CloneInitRequest request,
                                                   std::chrono::milliseconds timeout) {
  if (!has_capability("clone_init")) {
    return Error::unsupported("the VM's agent cannot take a clone's identity (no \"clone_init\" capability)");
  }
  if (request.unix_nanos == 0) {
    request.unix_nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  }
  if (request.seed.empty() && request.reseed) {
    request.seed.resize(kCloneSeedMinBytes);
    size_t filled = 0;
    while (filled < request.seed.size()) {
      ssize_t n = ::getrandom(request.seed.data() + filled, request.seed.size() - filled, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::last_os_error("getrandom for the clone's seed");
      filled += static_cast<size_t>(n);
    }
  }
  if (!request.seed.empty()) KILN_TRY(validate_clone_seed(request.seed));
  if (!request.hostname.empty()) KILN_TRY(validate_hostname(request.hostname));
  if (!request.machine_id.empty()) KILN_TRY(validate_machine_id(request.machine_id));
  std::string reply = KILN_TRY(request_reply(MessageType::kCloneInit, MessageType::kCloneInitReply,
                                             encode(request), "CLONE_INIT", timeout));
  // The step times are diagnostics: a reply without them (an older agent) or with a bad shape is no failure.
  auto decoded = decode_clone_init_reply(reply);
  if (!decoded) {
    log::debug("ignored the step times of CLONE_INIT_REPLY", {{"error", decoded.error().message()}});
    return CloneInitReply{};
  }
  return decoded;
}

Result<void> AgentConnection::configure_network(const NetworkConfigRequest& request,
                                                std::chrono::milliseconds timeout) {
  if (!has_capability("network"))
    return Error::unsupported(
        "the VM's agent cannot configure the guest's network (no \"network\" capability)");
  for (const auto& config : request.interfaces) KILN_TRY(validate_interface_config(config));
  return this->request(MessageType::kConfigureNetwork, MessageType::kConfigureNetworkReply, encode(request),
                       "CONFIGURE_NETWORK", timeout);
}

Result<void> AgentConnection::ping(std::chrono::milliseconds timeout) {
  if (broken_) return *broken_;
  uint64_t number = ++pings_sent_;
  outbound_.push(MessageType::kPing, kConnectionStream, std::to_string(number));
  return pump_until([this, number] { return pongs_received_ >= number; }, timeout, "PING");
}

Result<void> AgentConnection::shutdown(bool reboot, std::chrono::milliseconds timeout) {
  if (broken_) return *broken_;
  outbound_.push(MessageType::kShutdown, kConnectionStream, encode(ShutdownRequest{reboot}));
  return pump_until([this] { return shutdown_acknowledged_; }, timeout, "SHUTDOWN");
}

}  // namespace kiln::agent

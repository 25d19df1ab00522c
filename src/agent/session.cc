#include "agent/session.h"

#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "agent/guest_identity.h"
#include "agent/guest_mounts.h"
#include "agent/guest_network.h"
#include "common/log.h"
#include "kiln/version.h"

namespace kiln::agent {
namespace {

constexpr size_t kMaxDataFrame = size_t{64} * 1024;  // as the host splits stdin

}  // namespace

Result<void> Session::on_bytes(std::string_view bytes) {
  decoder_.feed(bytes);
  for (;;) {
    auto frame = decoder_.next();
    if (!frame) {
      send_error(kConnectionStream, frame.error());
      return std::move(frame).error();
    }
    if (!*frame) return ok();
    handle(std::move(**frame));
  }
}

void Session::collect_finished() {
  std::erase_if(processes_, [this](const auto& entry) {
    if (!entry.second->finished()) return false;
    if (parked_.contains(entry.first)) exited_replay_[entry.first] = entry.second->replay();
    return true;
  });
}

bool Session::keeps_processes() const {
  if (!held_.empty()) return true;
  return std::any_of(processes_.begin(), processes_.end(),
                     [](const auto& entry) { return entry.second->keep_on_disconnect(); });
}

void Session::detach() {
  std::erase_if(processes_, [](const auto& entry) { return !entry.second->keep_on_disconnect(); });
  // Whatever the dead channel did not wholly take goes to its process's holding writer, in order; replies
  // and connection frames were for the old host only.
  for (Frame& frame : outbound_.take_unsent_frames()) {
    bool output = frame.type == MessageType::kStdout || frame.type == MessageType::kStderr ||
                  frame.type == MessageType::kExit || frame.type == MessageType::kError;
    if (output && (processes_.contains(frame.stream) || held_.contains(frame.stream)))
      held_[frame.stream].push(frame.type, frame.stream, frame.payload);
  }
  for (auto& [id, process] : processes_) {
    parked_.insert(id);
    process->redirect(held_[id]);
  }
  decoder_ = FrameDecoder();
  hello_done_ = false;
  log::info("host session detached; keeping processes", {{"kept", parked_.size()}});
}

void Session::handle_reattach(const Frame& frame) {
  StreamId id = frame.stream;
  auto held = held_.find(id);
  if (!parked_.contains(id) && held == held_.end()) {
    return send_error(id, Error::not_found(fmt::format("REATTACH: no kept process with id {}", id)));
  }
  auto request = decode_reattach_request(frame.payload);
  if (!request) return send_error(id, request.error());
  auto live = processes_.find(id);
  auto exited = exited_replay_.find(id);
  const std::array<OutputReplay, 2>* replay = live != processes_.end()         ? &live->second->replay()
                                              : exited != exited_replay_.end() ? &exited->second
                                                                               : nullptr;
  bool resend = replay && request->stdout_offset && request->stderr_offset;
  outbound_.push(MessageType::kReattachReply, id, "");
  size_t held_bytes[2] = {0, 0};
  auto send_data = [&](MessageType type, std::string_view data) {
    held_bytes[type == MessageType::kStdout ? 0 : 1] += data.size();
    for (size_t offset = 0; offset < data.size(); offset += kMaxDataFrame)
      outbound_.push(type, id, data.substr(offset, kMaxDataFrame));
  };
  if (resend) {
    // Everything after what the host kept, from the record (held data frames are part of it).
    send_data(MessageType::kStdout, (*replay)[0].since(*request->stdout_offset));
    send_data(MessageType::kStderr, (*replay)[1].since(*request->stderr_offset));
  }
  if (held != held_.end()) {
    for (Frame& kept : held->second.take_unsent_frames()) {
      bool data = kept.type == MessageType::kStdout || kept.type == MessageType::kStderr;
      if (data && resend) continue;
      if (data) {
        send_data(kept.type, kept.payload);
      } else {
        outbound_.push(kept.type, kept.stream, kept.payload);
      }
    }
    held_.erase(held);
  }
  if (exited != exited_replay_.end()) exited_replay_.erase(exited);
  parked_.erase(id);
  if (auto process = processes_.find(id); process != processes_.end())
    process->second->reattach(outbound_, held_bytes[0], held_bytes[1]);
  log::info("process reattached", {{"id", id}});
}

void Session::send_error(StreamId stream, const Error& error) {
  outbound_.push(MessageType::kError, stream, encode(ErrorReply{error.category(), error.message()}));
}

void Session::handle(Frame frame) {
  switch (frame.type) {
    case MessageType::kHello:
      return handle_hello(frame);
    case MessageType::kPing:
      return outbound_.push(MessageType::kPong, frame.stream, frame.payload);
    case MessageType::kPong:
      return;
    default:
      break;
  }
  if (!hello_done_) {
    return send_error(frame.stream,
                      Error::failed_precondition(
                          fmt::format("{} before HELLO: the handshake comes first", to_string(frame.type))));
  }
  switch (frame.type) {
    case MessageType::kShutdown: {
      auto request = decode_shutdown_request(frame.payload);
      if (!request) return send_error(kConnectionStream, request.error());
      shutdown_ = *request;
      return;
    }
    case MessageType::kRun:
      return handle_run(frame);
    case MessageType::kMount:
      return handle_mount(frame);
    case MessageType::kUnmount:
      return handle_unmount(frame);
    case MessageType::kSetClock:
      return handle_set_clock(frame);
    case MessageType::kSetHostname:
      return handle_set_hostname(frame);
    case MessageType::kCloneInit:
      return handle_clone_init(frame);
    case MessageType::kConfigureNetwork:
      return handle_configure_network(frame);
    case MessageType::kReattach:
      return handle_reattach(frame);
    case MessageType::kStdin:
    case MessageType::kCloseStdin:
    case MessageType::kSignal:
    case MessageType::kResize:
    case MessageType::kCredit: {
      auto found = processes_.find(frame.stream);
      if (found == processes_.end() || found->second->finished() || parked_.contains(frame.stream)) {
        return send_error(frame.stream, Error::not_found(fmt::format("{}: no process with id {}",
                                                                     to_string(frame.type), frame.stream)));
      }
      return handle_process_frame(frame, *found->second);
    }
    default:
      return send_error(frame.stream, Error::protocol(fmt::format("{} is sent by the agent, not to it",
                                                                  to_string(frame.type))));
  }
}

void Session::handle_hello(const Frame& frame) {
  auto hello = decode_hello_request(frame.payload);
  if (!hello) return send_error(kConnectionStream, hello.error());
  if (hello->version.major != kProtocolVersion.major) {
    return send_error(
        kConnectionStream,
        Error::unsupported(fmt::format("protocol version mismatch: host speaks {}.{}, agent speaks {}.{}",
                                       hello->version.major, hello->version.minor, kProtocolVersion.major,
                                       kProtocolVersion.minor)));
  }
  if (hello_done_) {
    log::info("new HELLO: restarting the session", {{"killed", processes_.size()}});
    processes_.clear();
    parked_.clear();
    held_.clear();
    exited_replay_.clear();
  }
  hello_done_ = true;
  log::info("host connected", {{"peer", hello->peer}});
  HelloReply reply{
      kProtocolVersion,
      fmt::format("kiln-agent {}", kVersion),
      {"tty", "signal", "resize", "shutdown", "root_disk", "mount", "clock", "hostname", "container",
       "mount_serial", "container_files", "container_join", "reattach", "container_init", "clone_init",
       "mount_in_root", "file_builtins", "network", "network_slots"},
      config_.root};
  std::set<StreamId> kept(parked_.begin(), parked_.end());
  for (const auto& [id, frames] : held_) kept.insert(id);
  reply.kept_processes.assign(kept.begin(), kept.end());
  outbound_.push(MessageType::kHelloReply, kConnectionStream, encode(reply));
}

void Session::handle_run(const Frame& frame) {
  if (frame.stream == kConnectionStream) {
    return send_error(frame.stream, Error::protocol("RUN on stream 0: process ids start at 1"));
  }
  if (processes_.contains(frame.stream) || held_.contains(frame.stream)) {
    return send_error(frame.stream,
                      Error::already_exists(fmt::format("process id {} is in use", frame.stream)));
  }
  if (processes_.size() >= kMaxProcesses) {
    return send_error(frame.stream,
                      Error::unavailable(fmt::format("too many processes (limit {})", kMaxProcesses)));
  }
  auto spec = decode_process_spec(frame.payload);
  if (!spec) return send_error(frame.stream, spec.error());
  pid_t join_pid = 0;
  if (spec->container && spec->container->join != 0) {
    auto target = processes_.find(spec->container->join);
    if (target == processes_.end() || target->second->finished()) {
      return send_error(frame.stream, Error::failed_precondition(fmt::format(
                                          "process {} to join is not running", spec->container->join)));
    }
    join_pid = target->second->pid();
  }
  auto process = SupervisedProcess::start(frame.stream, *spec, loop_, reaper_, outbound_, join_pid);
  if (!process) {
    log::info("process failed to start", {{"id", frame.stream}, {"error", process.error().message()}});
    return send_error(frame.stream, process.error());
  }
  processes_.emplace(frame.stream, std::move(process).value());
}

Result<void> Session::check_request_id(const Frame& frame) const {
  if (frame.stream == kConnectionStream) {
    return Error::protocol(fmt::format("{} on stream 0: request ids start at 1", to_string(frame.type)));
  }
  if (processes_.contains(frame.stream) || held_.contains(frame.stream)) {
    return Error::already_exists(
        fmt::format("{}: id {} is a running process", to_string(frame.type), frame.stream));
  }
  return ok();
}

void Session::handle_mount(const Frame& frame) {
  auto handled = [&]() -> Result<void> {
    KILN_TRY(check_request_id(frame));
    MountRequest request = KILN_TRY(decode_mount_request(frame.payload));
    KILN_TRY(normalize_mount_request(request, "MOUNT"));
    if (!config_.guest_system) {
      return Error::unsupported("MOUNT: this agent is not PID 1 of a guest, so it mounts nothing");
    }
    return mount_in_guest(request);
  }();
  if (!handled) {
    log::info("mount failed", {{"id", frame.stream}, {"error", handled.error().message()}});
    return send_error(frame.stream, handled.error());
  }
  outbound_.push(MessageType::kMountReply, frame.stream, "{}");
}

void Session::handle_unmount(const Frame& frame) {
  auto handled = [&]() -> Result<void> {
    KILN_TRY(check_request_id(frame));
    UnmountRequest request = KILN_TRY(decode_unmount_request(frame.payload));
    std::string target = KILN_TRY(normalize_guest_path(request.target, "UNMOUNT target"));
    if (!config_.guest_system) {
      return Error::unsupported("UNMOUNT: this agent is not PID 1 of a guest, so it unmounts nothing");
    }
    return unmount_in_guest(target);
  }();
  if (!handled) return send_error(frame.stream, handled.error());
  outbound_.push(MessageType::kUnmountReply, frame.stream, "{}");
}

void Session::handle_set_clock(const Frame& frame) {
  auto handled = [&]() -> Result<void> {
    KILN_TRY(check_request_id(frame));
    SetClockRequest request = KILN_TRY(decode_set_clock_request(frame.payload));
    if (!config_.guest_system) {
      return Error::unsupported(
          "SET_CLOCK: this agent is not PID 1 of a guest, so it leaves the clock alone");
    }
    return set_wall_clock(request.unix_nanos, "SET_CLOCK");
  }();
  if (!handled) return send_error(frame.stream, handled.error());
  outbound_.push(MessageType::kSetClockReply, frame.stream, "{}");
}

void Session::handle_set_hostname(const Frame& frame) {
  auto handled = [&]() -> Result<void> {
    KILN_TRY(check_request_id(frame));
    SetHostnameRequest request = KILN_TRY(decode_set_hostname_request(frame.payload));
    if (!config_.guest_system) {
      return Error::unsupported(
          "SET_HOSTNAME: this agent is not PID 1 of a guest, so it leaves the hostname alone");
    }
    return set_guest_hostname(request.hostname, "SET_HOSTNAME");
  }();
  if (!handled) return send_error(frame.stream, handled.error());
  outbound_.push(MessageType::kSetHostnameReply, frame.stream, "{}");
}

void Session::handle_clone_init(const Frame& frame) {
  auto handled = [&]() -> Result<CloneInitReply> {
    KILN_TRY(check_request_id(frame));
    CloneInitRequest request = KILN_TRY(decode_clone_init_request(frame.payload));
    for (MountRequest& mount : request.mounts) {
      KILN_TRY(normalize_mount_request(mount, "CLONE_INIT mount"));
    }
    if (!config_.guest_system) {
      return Error::unsupported(
          "CLONE_INIT: this agent is not PID 1 of a guest, so it leaves the clock, hostname, RNG and "
          "machine id alone");
    }
    return apply_clone_init(request);
  }();
  if (!handled) {
    log::info("clone init failed", {{"id", frame.stream}, {"error", handled.error().message()}});
    return send_error(frame.stream, handled.error());
  }
  outbound_.push(MessageType::kCloneInitReply, frame.stream, encode(*handled));
}

void Session::handle_configure_network(const Frame& frame) {
  auto handled = [&]() -> Result<void> {
    KILN_TRY(check_request_id(frame));
    NetworkConfigRequest request = KILN_TRY(decode_network_config_request(frame.payload));
    if (!config_.guest_system) {
      return Error::unsupported(
          "CONFIGURE_NETWORK: this agent is not PID 1 of a guest, so it leaves the network alone");
    }
    return apply_network_config(request.interfaces);
  }();
  if (!handled) {
    log::info("network configuration failed", {{"id", frame.stream}, {"error", handled.error().message()}});
    return send_error(frame.stream, handled.error());
  }
  outbound_.push(MessageType::kConfigureNetworkReply, frame.stream, "{}");
}

void Session::handle_process_frame(const Frame& frame, SupervisedProcess& process) {
  switch (frame.type) {
    case MessageType::kStdin:
      return process.on_stdin(frame.payload);
    case MessageType::kCloseStdin:
      return process.on_close_stdin();
    case MessageType::kSignal: {
      auto request = decode_signal_request(frame.payload);
      if (!request) return send_error(frame.stream, request.error());
      return process.on_signal(request->signum);
    }
    case MessageType::kResize: {
      auto size = decode_tty_size(frame.payload);
      if (!size) return send_error(frame.stream, size.error());
      return process.on_resize(*size);
    }
    case MessageType::kCredit: {
      auto grant = decode_credit_grant(frame.payload);
      if (!grant) return send_error(frame.stream, grant.error());
      return process.on_credit(*grant);
    }
    default:
      return;
  }
}

}  // namespace kiln::agent

#include "engine/fake/fake_engine.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <limits>

#include "agent/protocol/frame_writer.h"
#include "common/json.h"
#include "engine/share_entries.h"

namespace kiln::engine::fake {
namespace {

using agent::Frame;
using agent::MessageType;

constexpr const char* kSavedStateFile = "/fake-vm.json";
constexpr const char* kSavedTemplateFile = "/fake-template.json";

Error monitor_gone() {
  return Error::unavailable("the VM's monitor has exited");
}

void signal_eventfd(int fd) {
  uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

std::string joined(const std::vector<std::string>& words, size_t from) {
  std::string text;
  for (size_t i = from; i < words.size(); ++i) text += (i > from ? " " : "") + words[i];
  return text;
}

// One VmInstance handle on a machine. Dropping it kills the machine only when it was launched to die with
// its launcher and not released, as QemuVm does.
class FakeVm final : public VmInstance {
 public:
  FakeVm(std::shared_ptr<FakeMachine> machine, bool kill_on_drop)
      : machine_(std::move(machine)), kill_on_drop_(kill_on_drop) {}
  ~FakeVm() override {
    if (kill_on_drop_) (void)kill();
  }

  Result<UniqueFd> connect_agent() override { return machine_->connect_agent(); }
  Result<void> pause() override { return machine_->set_paused(true); }
  Result<void> resume() override { return machine_->set_paused(false); }
  Result<VmRunState> run_state() override { return machine_->run_state(); }
  Result<void> kill() override {
    ExitStatus killed = ExitStatus::signaled(SIGKILL);
    machine_->exit(fmt::format("the VM's monitor {}", killed.describe()), killed);
    return ok();
  }
  Result<std::optional<ExitStatus>> wait_for_exit(std::chrono::milliseconds timeout) override {
    pollfd fd{.fd = machine_->exit_fd(), .events = POLLIN, .revents = 0};
    auto wait_ms = std::min<std::chrono::milliseconds::rep>(timeout.count(), std::numeric_limits<int>::max());
    int ready = ::poll(&fd, 1, static_cast<int>(std::max<std::chrono::milliseconds::rep>(wait_ms, 0)));
    if (ready < 0 && errno != EINTR) return Error::last_os_error("poll");
    return machine_->exit_status();
  }
  std::string exit_reason() override { return machine_->exit_reason(); }
  int exit_fd() const override { return machine_->exit_fd(); }
  std::string console_log_path() const override { return machine_->runtime_dir() + "/console.log"; }
  pid_t monitor_pid() const override { return machine_->pid(); }
  void release() override { kill_on_drop_ = false; }
  Result<void> relocate(const std::string& runtime_dir) override { return machine_->relocate(runtime_dir); }
  Result<void> save_state(const std::string& dir) override { return machine_->save_state(dir); }
  Result<void> swap_disk(size_t slot, const DiskSpec& disk) override {
    return machine_->swap_disk(slot, disk);
  }
  Result<void> add_share_entries(size_t share, const std::vector<ShareEntry>& entries) override {
    return machine_->add_share_entries(share, entries);
  }

 private:
  std::shared_ptr<FakeMachine> machine_;
  bool kill_on_drop_;
};

}  // namespace

// The agent thread's side of one host connection.
struct FakeMachine::Channel {
  UniqueFd fd;
  agent::FrameDecoder decoder;
  agent::FrameWriter out;
  bool hello_done = false;
};

FakeMachine::FakeMachine(pid_t pid, VmSpec spec, FakeScript script)
    : pid_(pid),
      spec_(std::move(spec)),
      exited_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      wakeup_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      script_(std::move(script)),
      runtime_dir_(spec_.runtime_dir),
      slots_(disk_slots_of(spec_)),
      disks_(spec_.disks),
      shares_(spec_.shares),
      agent_thread_([this] { serve_agent(); }) {}

std::string FakeMachine::runtime_dir() const {
  std::lock_guard guard(mutex_);
  return runtime_dir_;
}

Result<void> FakeMachine::relocate(const std::string& runtime_dir) {
  std::lock_guard guard(mutex_);
  if (state_ == VmRunState::kExited) return Error::failed_precondition("the VM's monitor has exited");
  if (::rename(runtime_dir_.c_str(), runtime_dir.c_str()) != 0)
    return Error::last_os_error(fmt::format("move {} to {}", runtime_dir_, runtime_dir));
  for (auto& share : shares_) share.host_path = moved_path(share.host_path, runtime_dir_, runtime_dir);
  runtime_dir_ = runtime_dir;
  return ok();
}

FakeMachine::~FakeMachine() {
  {
    std::lock_guard guard(mutex_);
    stopping_ = true;
  }
  wake();
  agent_thread_.join();
}

VmRunState FakeMachine::run_state() const {
  std::lock_guard guard(mutex_);
  return state_;
}

void FakeMachine::exit(std::string reason, ExitStatus status) {
  {
    std::lock_guard guard(mutex_);
    if (state_ == VmRunState::kExited) return;
    state_ = VmRunState::kExited;
    exit_reason_ = std::move(reason);
    exit_status_ = status;
  }
  signal_eventfd(exited_.get());
  agent_idle_.notify_all();
  wake();
}

void FakeMachine::drop_agent_channel() {
  std::unique_lock lock(mutex_);
  drop_channel_ = true;
  wake();
  // Synchronous, so a test knows that what it sends next meets a closed channel.
  agent_idle_.wait(lock, [this] { return !drop_channel_ || state_ == VmRunState::kExited || stopping_; });
}

void FakeMachine::set_reaction(MessageType type, AgentReaction reaction) {
  std::lock_guard guard(mutex_);
  script_.reactions[type] = std::move(reaction);
}

void FakeMachine::set_save_error(std::optional<Error> error) {
  std::lock_guard guard(mutex_);
  script_.save_error = std::move(error);
}

std::vector<std::string> FakeMachine::requests() const {
  std::lock_guard guard(mutex_);
  return requests_;
}

int FakeMachine::agent_connections() const {
  std::lock_guard guard(mutex_);
  return connections_;
}

std::vector<DiskSpec> FakeMachine::disks() const {
  std::lock_guard guard(mutex_);
  return disks_;
}

std::vector<ShareSpec> FakeMachine::shares() const {
  std::lock_guard guard(mutex_);
  return shares_;
}

std::vector<std::string> FakeMachine::changes() const {
  std::lock_guard guard(mutex_);
  return changes_;
}

void FakeMachine::set_disk_slots(std::vector<DiskSlot> slots) {
  std::lock_guard guard(mutex_);
  slots_ = std::move(slots);
}

Result<void> FakeMachine::swap_disk(size_t slot, const DiskSpec& disk) {
  std::lock_guard guard(mutex_);
  if (state_ == VmRunState::kExited) return monitor_gone();
  DiskSpec wanted = KILN_TRY(check_disk_for_slot(slots_, slot, disk));
  if (script_.swap_error) return *script_.swap_error;
  disks_.at(slot) = wanted;
  changes_.push_back(fmt::format("swap {} {} {}", slot, wanted.path.empty() ? "placeholder" : wanted.path,
                                 wanted.read_only ? "ro" : "rw"));
  return ok();
}

Result<void> FakeMachine::add_share_entries(size_t share, const std::vector<ShareEntry>& entries) {
  std::lock_guard guard(mutex_);
  if (state_ == VmRunState::kExited) return monitor_gone();
  if (share >= shares_.size())
    return Error::invalid_argument(
        fmt::format("the VM has no share {} (it has {} shares)", share, shares_.size()));
  ShareSpec& into = shares_[share];
  KILN_TRY(check_late_share_entries(into, entries));
  if (script_.share_entries_error) return *script_.share_entries_error;
  std::string line = fmt::format("share {}", share);
  for (const auto& entry : entries) {
    line += fmt::format(" {}={}{}", entry.name, entry.source, entry.read_only ? ":ro" : "");
    into.entries.push_back(entry);
  }
  changes_.push_back(line);
  return ok();
}

std::string FakeMachine::exit_reason() const {
  std::lock_guard guard(mutex_);
  return exit_reason_.empty() ? "the VM's monitor exited unexpectedly" : exit_reason_;
}

std::optional<ExitStatus> FakeMachine::exit_status() const {
  std::lock_guard guard(mutex_);
  return exit_status_;
}

Result<UniqueFd> FakeMachine::connect_agent() {
  auto [host_end, agent_end] = KILN_TRY(make_socket_pair());
  KILN_TRY(set_nonblocking(agent_end.get()));
  {
    std::lock_guard guard(mutex_);
    if (state_ == VmRunState::kExited) return monitor_gone();
    // Like QEMU's chardev, one client at a time: a new connection replaces the old one.
    incoming_ = std::move(agent_end);
    ++connections_;
  }
  wake();
  return std::move(host_end);
}

Result<void> FakeMachine::set_paused(bool paused) {
  {
    std::unique_lock lock(mutex_);
    if (state_ == VmRunState::kExited) return monitor_gone();
    state_ = paused ? VmRunState::kPaused : VmRunState::kRunning;
    // As after QEMU's `stop`, once pause returns the guest runs no more: its agent finishes the batch it is
    // answering, then answers nothing until resumed.
    if (paused) agent_idle_.wait(lock, [this] { return !agent_busy_; });
  }
  wake();
  return ok();
}

Result<void> FakeMachine::save_state(const std::string& dir, bool memory_file) {
  {
    std::lock_guard guard(mutex_);
    if (state_ == VmRunState::kExited) return monitor_gone();
    if (script_.save_error) return *script_.save_error;
  }
  Json saved{{"name", spec_.name},
             {"cpus", spec_.cpus},
             {"memory_mib", spec_.memory_mib},
             {"kind", memory_file ? "memory-file" : "stream"}};
  if (memory_file) KILN_TRY(write_file_atomic(dir + "/memory", ""));
  KILN_TRY(write_file_atomic(dir + kSavedStateFile, saved.dump()));
  exit("the VM's state was saved");
  return ok();
}

void FakeMachine::note_on_console(std::string_view line) {
  UniqueFd console(
      ::open((runtime_dir() + "/console.log").c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (console) (void)write_all(console.get(), std::string(line) + "\n");
}

void FakeMachine::wake() {
  signal_eventfd(wakeup_.get());
}

void FakeMachine::serve_agent() {
  std::optional<Channel> channel;
  for (;;) {
    bool listening = false;
    {
      std::lock_guard guard(mutex_);
      // An exited monitor takes its agent with it: returning closes the channel, the host sees EOF.
      if (stopping_ || state_ == VmRunState::kExited) return;
      if (std::exchange(drop_channel_, false)) {
        channel.reset();
        agent_idle_.notify_all();
      }
      if (incoming_) {
        channel.emplace();
        channel->fd = std::move(incoming_);
      }
      listening = channel && state_ == VmRunState::kRunning;  // a paused guest's agent does not run
    }
    pollfd fds[2] = {{.fd = wakeup_.get(), .events = POLLIN, .revents = 0},
                     {.fd = listening ? channel->fd.get() : -1, .events = POLLIN, .revents = 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[0].revents & POLLIN) {
      uint64_t count = 0;
      (void)!::read(wakeup_.get(), &count, sizeof count);
    }
    if (!listening || fds[1].revents == 0) continue;
    {
      std::lock_guard guard(mutex_);
      if (state_ != VmRunState::kRunning) continue;  // paused since the poll: the bytes wait
      agent_busy_ = true;
    }
    bool keep = read_and_answer(*channel);
    {
      std::lock_guard guard(mutex_);
      agent_busy_ = false;
    }
    agent_idle_.notify_all();
    if (!keep) {
      // The host hung up or broke the protocol; wait for the next connection, and say so as kiln-agent does.
      channel.reset();
      note_on_console("host session ended");
    }
  }
}

bool FakeMachine::read_and_answer(Channel& channel) {
  char buffer[16384];
  ssize_t got = ::read(channel.fd.get(), buffer, sizeof buffer);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (got <= 0) return false;
  channel.decoder.feed(std::string_view(buffer, static_cast<size_t>(got)));
  for (;;) {
    auto frame = channel.decoder.next();
    if (!frame) return false;
    if (!*frame) break;
    handle(channel, **frame);
    if (exited()) return false;  // a dead monitor's agent answers nothing more
  }
  // Replies are small, and the socket buffer holds far more than one batch of them.
  return channel.out.flush(channel.fd.get()).has_value();
}

void FakeMachine::handle(Channel& channel, const Frame& frame) {
  AgentReaction reaction;
  {
    std::lock_guard guard(mutex_);
    if (auto found = script_.reactions.find(frame.type); found != script_.reactions.end())
      reaction = found->second;
  }
  std::string request(agent::to_string(frame.type));
  switch (reaction.kind) {
    case AgentReaction::Kind::kAnswer:
      return answer(channel, frame, request);
    case AgentReaction::Kind::kFail:
      channel.out.push(MessageType::kError, frame.stream,
                       agent::encode(agent::ErrorReply{reaction.error.category(), reaction.error.message()}));
      break;
    case AgentReaction::Kind::kIgnore:
      break;
    case AgentReaction::Kind::kMonitorExits:
      exit(reaction.exit_reason.empty() ? "the VM's monitor crashed" : reaction.exit_reason,
           ExitStatus::signaled(SIGABRT));
      break;
  }
  std::lock_guard guard(mutex_);
  requests_.push_back(request);
}

void FakeMachine::answer(Channel& channel, const Frame& frame, const std::string& type_name) {
  auto refuse = [&](const Error& error) {
    channel.out.push(MessageType::kError, frame.stream,
                     agent::encode(agent::ErrorReply{error.category(), error.message()}));
  };
  std::string request = type_name;
  auto record = [&] {
    std::lock_guard guard(mutex_);
    requests_.push_back(request);
  };
  if (frame.type == MessageType::kPing)
    return channel.out.push(MessageType::kPong, frame.stream, frame.payload);
  if (frame.type == MessageType::kPong || frame.type == MessageType::kCredit) return;
  if (frame.type == MessageType::kHello) {
    auto hello = agent::decode_hello_request(frame.payload);
    if (!hello) return refuse(hello.error());
    channel.hello_done = true;
    agent::HelloReply reply{
        .agent = "kiln-fake-agent",
        .capabilities = {"tty", "signal", "resize", "shutdown", "root_disk", "mount", "clock", "hostname",
                         "container", "mount_serial", "container_files", "container_join", "reattach",
                         "container_init", "clone_init", "file_builtins"}};
    if (spec_.root_disk >= 0) {
      std::lock_guard guard(mutex_);
      reply.root = script_.root.value_or(agent::RootDiskStatus{
          .serial = fmt::format("kiln-disk{}", spec_.root_disk), .device = "/dev/vda", .mounted = true});
    }
    record();
    return channel.out.push(MessageType::kHelloReply, agent::kConnectionStream, agent::encode(reply));
  }
  if (!channel.hello_done) {
    return refuse(
        Error::failed_precondition(fmt::format("{} before HELLO: the handshake comes first", request)));
  }
  switch (frame.type) {
    case MessageType::kSetHostname: {
      auto decoded = agent::decode_set_hostname_request(frame.payload);
      if (!decoded) return refuse(decoded.error());
      request += " " + decoded->hostname;
      record();
      return channel.out.push(MessageType::kSetHostnameReply, frame.stream, "{}");
    }
    case MessageType::kSetClock: {
      auto decoded = agent::decode_set_clock_request(frame.payload);
      if (!decoded) return refuse(decoded.error());
      record();
      return channel.out.push(MessageType::kSetClockReply, frame.stream, "{}");
    }
    case MessageType::kMount: {
      auto decoded = agent::decode_mount_request(frame.payload);
      if (!decoded) return refuse(decoded.error());
      request += fmt::format(" {} {}", decoded->source, decoded->target);
      record();
      return channel.out.push(MessageType::kMountReply, frame.stream, "{}");
    }
    case MessageType::kCloneInit: {
      auto decoded = agent::decode_clone_init_request(frame.payload);
      if (!decoded) return refuse(decoded.error());
      request += fmt::format(" {} reseed={}", decoded->hostname.empty() ? "-" : decoded->hostname,
                             decoded->reseed && !decoded->seed.empty());
      for (const auto& mount : decoded->mounts) request += fmt::format(" {}:{}", mount.source, mount.target);
      record();
      return channel.out.push(MessageType::kCloneInitReply, frame.stream, "{}");
    }
    case MessageType::kUnmount: {
      auto decoded = agent::decode_unmount_request(frame.payload);
      if (!decoded) return refuse(decoded.error());
      request += " " + decoded->target;
      record();
      return channel.out.push(MessageType::kUnmountReply, frame.stream, "{}");
    }
    case MessageType::kRun:
      return run_process(channel, frame);
    case MessageType::kShutdown: {
      auto decoded = agent::decode_shutdown_request(frame.payload);
      if (!decoded) return refuse(decoded.error());
      record();
      // As kiln-agent: acknowledge once synced, then the guest powers off and its monitor exits.
      channel.out.push(MessageType::kShutdown, agent::kConnectionStream, "");
      (void)channel.out.flush(channel.fd.get());
      exit(decoded->reboot ? "the guest rebooted (a Kiln VM stops when its guest reboots)"
                           : kGuestPoweredOff);
      return;
    }
    case MessageType::kStdin:
    case MessageType::kCloseStdin:
    case MessageType::kSignal:
    case MessageType::kResize:
      return;  // fake processes end as soon as they start
    default:
      return refuse(Error::protocol(fmt::format("{} is sent by the agent, not to it", request)));
  }
}

// Fake processes: `echo WORDS` prints them, `true` and `false` exit 0 and 1; anything else is not found, as
// kiln-agent reports an exec that failed.
void FakeMachine::run_process(Channel& channel, const Frame& frame) {
  auto spec = agent::decode_process_spec(frame.payload);
  if (spec && spec->builtin) return run_builtin(channel, frame, *spec->builtin);
  if (!spec || spec->argv.empty()) {
    Error error = spec ? Error::invalid_argument("RUN: empty argv") : spec.error();
    channel.out.push(MessageType::kError, frame.stream,
                     agent::encode(agent::ErrorReply{error.category(), error.message()}));
    return;
  }
  {
    std::lock_guard guard(mutex_);
    requests_.push_back("RUN " + joined(spec->argv, 0));
  }
  const std::string& program = spec->argv[0];
  if (program != "echo" && program != "true" && program != "false") {
    channel.out.push(
        MessageType::kError, frame.stream,
        agent::encode(agent::ErrorReply{ErrorCategory::kNotFound,
                                        fmt::format("exec {}: No such file or directory", program)}));
    return;
  }
  channel.out.push(MessageType::kStarted, frame.stream,
                   agent::encode(agent::ProcessStarted{.pid = 100 + frame.stream}));
  if (program == "echo") channel.out.push(MessageType::kStdout, frame.stream, joined(spec->argv, 1) + "\n");
  channel.out.push(MessageType::kExit, frame.stream,
                   agent::encode(ExitStatus::exited(program == "false" ? 1 : 0)));
}

// Fake file builtins (src/agent/file_builtins.h): the root holds only /etc/hostname (stat, get) and the
// directory /tmp (put); diff always reports the same three changes, layer is an empty tar. Exit codes are the
// real builtins'.
void FakeMachine::run_builtin(Channel& channel, const Frame& frame, const agent::BuiltinSpec& builtin) {
  {
    std::lock_guard guard(mutex_);
    requests_.push_back(fmt::format("BUILTIN {} {} {}", builtin.name, builtin.root, joined(builtin.args, 0)));
  }
  channel.out.push(MessageType::kStarted, frame.stream,
                   agent::encode(agent::ProcessStarted{.pid = 100 + frame.stream}));
  std::string path = builtin.args.empty() ? "" : builtin.args[0];
  int code = 0;
  auto missing = [&] {
    channel.out.push(MessageType::kStderr, frame.stream,
                     fmt::format("lstat {}: No such file or directory\n", path));
    code = 2;
  };
  if (builtin.name == "archive-stat") {
    if (path == "/etc/hostname") {
      channel.out.push(
          MessageType::kStdout, frame.stream,
          R"({"name":"hostname","size":6,"mode":420,"mtime":"2024-01-01T00:00:00Z","linkTarget":""})"
          "\n");
    } else {
      missing();
    }
  } else if (builtin.name == "archive-get") {
    if (path == "/etc/hostname") {
      channel.out.push(MessageType::kStdout, frame.stream, "tar of /etc/hostname");
    } else {
      missing();
    }
  } else if (builtin.name == "archive-put") {
    if (path == "/etc/hostname") {
      channel.out.push(MessageType::kStderr, frame.stream, "extraction point is not a directory\n");
      code = 3;
    } else if (path != "/tmp") {
      missing();
    }
  } else if (builtin.name == "export") {
    channel.out.push(MessageType::kStdout, frame.stream, "tar of the root");
  } else if (builtin.name == "layer") {
    channel.out.push(MessageType::kStdout, frame.stream, std::string(1024, '\0'));  // an empty tar
  } else if (builtin.name == "diff") {
    channel.out.push(MessageType::kStdout, frame.stream, "C /etc\nA /etc/new\nD /old\n");
  } else {
    code = 5;
  }
  channel.out.push(MessageType::kExit, frame.stream, agent::encode(ExitStatus::exited(code)));
}

Result<std::unique_ptr<VmInstance>> FakeEngine::launch(const VmSpec& spec) {
  FakeScript script;
  {
    std::lock_guard guard(mutex_);
    ++launches_;
    script = script_;
  }
  if (script.launch_error) return *script.launch_error;
  if (spec.cpus == 0) return Error::invalid_argument("a VM needs at least one CPU");
  struct stat st {};
  if (::stat(spec.runtime_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error::invalid_argument(fmt::format("runtime directory {} does not exist", spec.runtime_dir));
  VmSpec started = spec;
  if (!spec.restore_from.empty()) {
    auto saved = read_file(spec.restore_from + kSavedStateFile);
    if (!saved) {
      return Error::failed_precondition(
          fmt::format("restore the VM's state: no saved state in {}", spec.restore_from));
    }
    Json state = KILN_TRY(parse_json(*saved));
    if (state.value("cpus", 0u) != spec.cpus || state.value("memory_mib", uint64_t{0}) != spec.memory_mib) {
      return Error::failed_precondition("restore the VM's state: it was saved with other cpus or memory");
    }
    if (state.value("kind", "stream") == "memory-file") {
      std::string memory = spec.restore_from + "/memory";
      if (::stat(memory.c_str(), &st) != 0)
        return Error::failed_precondition(fmt::format("restore the VM's state: {} is missing", memory));
      // As QemuEngine: the restored VM's RAM maps the suspended memory file private.
      started.memory = {.kind = MemoryBacking::Kind::kFile, .path = memory, .shared = false};
    }
  }
  KILN_TRY(write_file_atomic(
      spec.runtime_dir + "/console.log",
      fmt::format("fake VM {} {}\n", spec.name, spec.restore_from.empty() ? "booted" : "restored")));
  std::shared_ptr<FakeMachine> machine;
  {
    std::lock_guard guard(mutex_);
    machine = std::make_shared<FakeMachine>(next_pid_++, started, std::move(script));
    machines_[machine->pid()] = machine;
  }
  return std::unique_ptr<VmInstance>(std::make_unique<FakeVm>(machine, spec.die_with_launcher));
}

Result<std::string> FakeEngine::template_key(const VmSpec& spec) {
  std::string slots;
  for (const auto& disk : spec.disks) slots += disk.read_only ? "ro," : "rw,";
  return fmt::format("fake-{}cpu-{}mib-{}{}shares-{}", spec.cpus, spec.memory_mib, slots, spec.shares.size(),
                     spec.kernel.size());
}

Result<VmTemplate> FakeEngine::build_template(const VmSpec& spec, const std::string& dir,
                                              const std::function<Result<void>(VmInstance&)>& until_idle) {
  {
    std::lock_guard guard(mutex_);
    ++template_builds_;
    if (script_.build_error) return *script_.build_error;
  }
  std::string key = KILN_TRY(template_key(spec));
  auto vm = KILN_TRY(launch(spec));
  KILN_TRY(until_idle(*vm));
  (void)vm->kill();
  Json read_only = Json::array(), capacity = Json::array();
  for (const auto& disk : spec.disks) {
    read_only.push_back(disk.read_only);
    capacity.push_back(disk.path.empty() ? disk.placeholder_bytes : 0);
  }
  Json saved = {{"key", key},
                {"cpus", spec.cpus},
                {"memory_mib", spec.memory_mib},
                {"read_only", read_only},
                {"capacity", capacity},
                {"shares", spec.shares.size()}};
  KILN_TRY(write_file_atomic(dir + kSavedTemplateFile, saved.dump()));
  KILN_TRY(write_file_atomic(dir + "/memory", ""));
  return open_template(dir);
}

Result<VmTemplate> FakeEngine::open_template(const std::string& dir) {
  auto text = read_file(dir + kSavedTemplateFile);
  if (!text) return Error::failed_precondition(fmt::format("{} holds no fake template", dir));
  Json saved = KILN_TRY(parse_json(*text));
  std::vector<bool> read_only;
  for (const auto& flag : saved.value("read_only", Json::array())) read_only.push_back(flag.get<bool>());
  std::vector<uint64_t> capacity;
  for (const auto& bytes : saved.value("capacity", Json::array())) capacity.push_back(bytes.get<uint64_t>());
  return make_template({.dir = dir,
                        .key = saved.value("key", ""),
                        .memory_path = dir + "/memory",
                        .memory_bytes = saved.value("memory_mib", uint64_t{0}) << 20,
                        .cpus = saved.value("cpus", 1u),
                        .memory_mib = saved.value("memory_mib", uint64_t{0}),
                        .disk_read_only = std::move(read_only),
                        .disk_capacity = std::move(capacity),
                        .shares = saved.value("shares", size_t{0})});
}

Result<std::unique_ptr<VmInstance>> FakeEngine::fork(const VmTemplate& from, const VmSpec& spec) {
  {
    std::lock_guard guard(mutex_);
    ++forks_;
    if (script_.fork_error) return *script_.fork_error;
  }
  KILN_TRY(check_forkable(from, spec));
  if (!read_file(from.dir() + kSavedTemplateFile))
    return Error::failed_precondition(fmt::format("template {} is gone", from.dir()));
  VmSpec clone = spec;
  clone.restore_from.clear();
  clone.memory = {.kind = MemoryBacking::Kind::kFile, .path = from.memory_path(), .shared = false};
  auto vm = KILN_TRY(launch(clone));
  // The guest probed its disks when the template booted: the slots are as large as the template's.
  if (auto forked = machine(vm->monitor_pid())) forked->set_disk_slots(disk_slots_of(clone, &from));
  KILN_TRY(
      write_file_atomic(spec.runtime_dir + "/console.log", fmt::format("fake VM {} forked\n", spec.name)));
  vm->set_start_timings({{"fork", std::chrono::microseconds(1000)}});
  return vm;
}

Result<VmTemplate> FakeEngine::snapshot_running(VmInstance& vm, const std::string& dir,
                                                const std::string& key,
                                                const std::function<Result<void>()>& while_paused) {
  std::optional<Error> failure;
  {
    std::lock_guard guard(mutex_);
    ++snapshots_;
    failure = script_.snapshot_error;
  }
  auto found = machine(vm.monitor_pid());
  if (!found || found->exited()) return Error::failed_precondition("the VM is not running");
  const VmSpec& spec = found->spec();
  if (spec.memory.kind != MemoryBacking::Kind::kMemfd || !spec.memory.shared)
    return Error::failed_precondition(
        "its RAM is not a shared memfd (a VM that is itself a fork, or was restored from a memory file)");
  bool was_running = found->run_state() == VmRunState::kRunning;
  KILN_TRY(found->set_paused(true));
  auto saved = [&]() -> Result<void> {
    KILN_TRY(while_paused());
    {
      std::lock_guard guard(mutex_);
      paused_while_snapshotting_ = found->run_state() == VmRunState::kPaused;
    }
    if (failure) return *failure;
    Json read_only = Json::array();
    for (const auto& disk : spec.disks) read_only.push_back(disk.read_only);
    Json saved = {{"key", key},
                  {"cpus", spec.cpus},
                  {"memory_mib", spec.memory_mib},
                  {"read_only", read_only},
                  {"shares", spec.shares.size()}};
    KILN_TRY(write_file_atomic(dir + kSavedTemplateFile, saved.dump()));
    KILN_TRY(write_file_atomic(dir + "/memory", ""));
    return ok();
  }();
  if (was_running) KILN_TRY(found->set_paused(false));
  if (!saved) return saved.error();
  return open_template(dir);
}

Result<void> FakeEngine::suspend_running(VmInstance& vm, const std::string& dir) {
  {
    std::lock_guard guard(mutex_);
    ++suspends_;
  }
  auto found = machine(vm.monitor_pid());
  if (!found || found->exited()) return Error::failed_precondition("the VM is not running");
  const VmSpec& spec = found->spec();
  if (spec.memory.kind != MemoryBacking::Kind::kMemfd || !spec.memory.shared)
    return Error::unsupported("its RAM is not a shared memfd (a VM that is itself a fork)");
  return found->save_state(dir, true);
}

int FakeEngine::suspends() const {
  std::lock_guard guard(mutex_);
  return suspends_;
}

int FakeEngine::snapshots() const {
  std::lock_guard guard(mutex_);
  return snapshots_;
}

bool FakeEngine::paused_while_snapshotting() const {
  std::lock_guard guard(mutex_);
  return paused_while_snapshotting_;
}

int FakeEngine::template_builds() const {
  std::lock_guard guard(mutex_);
  return template_builds_;
}

int FakeEngine::forks() const {
  std::lock_guard guard(mutex_);
  return forks_;
}

Result<std::unique_ptr<VmInstance>> FakeEngine::adopt(const VmSpec& spec, pid_t monitor_pid) {
  auto found = machine(monitor_pid);
  if (!found || found->exited()) return Error::not_found(fmt::format("no process with pid {}", monitor_pid));
  // QemuEngine recognizes its VM by the per-VM socket path on QEMU's command line; the runtime dir stands in.
  if (found->runtime_dir() != spec.runtime_dir)
    return Error::not_found(fmt::format("process {} is not this VM's monitor", monitor_pid));
  return std::unique_ptr<VmInstance>(std::make_unique<FakeVm>(found, false));
}

void FakeEngine::set_script(FakeScript script) {
  std::lock_guard guard(mutex_);
  script_ = std::move(script);
}

std::shared_ptr<FakeMachine> FakeEngine::machine(pid_t pid) const {
  std::lock_guard guard(mutex_);
  auto found = machines_.find(pid);
  return found == machines_.end() ? nullptr : found->second;
}

int FakeEngine::launches() const {
  std::lock_guard guard(mutex_);
  return launches_;
}

int FakeEngine::running_machines() const {
  std::lock_guard guard(mutex_);
  int running = 0;
  for (const auto& [pid, machine] : machines_) running += machine->exited() ? 0 : 1;
  return running;
}

}  // namespace kiln::engine::fake

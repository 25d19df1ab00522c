// FakeEngine: an Engine for unit tests whose VMs live in memory. No process is booted: a VM's "monitor" is a
// FakeMachine with a made-up pid whose exit is an eventfd, and its guest agent is a thread of this process
// speaking the real agent protocol (src/agent/protocol) on a socketpair, so the code under test runs its real
// client side. Tests script failures (a launch that fails, a monitor that dies on a given agent request, a
// request answered with an error or never) and play the guest (power off). Thread-safe: the engine, its
// machines and their VmInstances may be used from any thread. A test-support library, never linked into
// kilnd.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"
#include "common/unique_fd.h"
#include "engine/disk_slots.h"
#include "engine/engine.h"

namespace kiln::engine::fake {

// How the fake agent reacts to one type of request (HELLO, SET_HOSTNAME, MOUNT, SET_CLOCK, RUN, SHUTDOWN...).
struct AgentReaction {
  enum class Kind {
    kAnswer,        // as the real agent answers it
    kFail,          // an ERROR frame carrying `error`
    kIgnore,        // never answers
    kMonitorExits,  // the monitor exits when the request arrives (with `exit_reason`), leaving it unanswered
  };
  Kind kind = Kind::kAnswer;
  Error error = Error::internal("scripted failure");
  std::string exit_reason;

  static AgentReaction answer() { return {}; }
  static AgentReaction fail(Error error) { return {.kind = Kind::kFail, .error = std::move(error)}; }
  static AgentReaction ignore() { return {.kind = Kind::kIgnore}; }
  static AgentReaction monitor_exits(std::string reason) {
    return {.kind = Kind::kMonitorExits, .exit_reason = std::move(reason)};
  }
};

// What the next launches do. Copied into each machine at launch; change one machine with its own setters.
struct FakeScript {
  std::optional<Error> launch_error;  // launch() fails with this
  // save_state() and suspend_running() fail with this (the VM keeps running)
  std::optional<Error> save_error;
  std::optional<Error> build_error;  // build_template() fails with this
  std::optional<Error> fork_error;   // fork() fails with this
  // swap_disk() / add_share_entries() fail with these (after their checks pass), nothing changed
  std::optional<Error> swap_error;
  std::optional<Error> share_entries_error;
  // snapshot_running() fails with this after its while_paused ran (the VM is resumed, as QemuEngine does)
  std::optional<Error> snapshot_error;
  std::map<agent::MessageType, AgentReaction> reactions;
  // HELLO_REPLY's root disk status when the spec names a root disk; nullopt: mounted.
  std::optional<agent::RootDiskStatus> root;
};

// Reasons the fake reports, as QemuVm words them.
inline constexpr const char* kGuestPoweredOff = "the guest powered off";

// One fake VM: its monitor state and its guest agent. Outlives the VmInstances that name it (a released VM
// keeps "running" in its engine, ready to be adopted).
class FakeMachine {
 public:
  FakeMachine(pid_t pid, VmSpec spec, FakeScript script);
  ~FakeMachine();
  FakeMachine(const FakeMachine&) = delete;
  FakeMachine& operator=(const FakeMachine&) = delete;

  pid_t pid() const { return pid_; }
  const VmSpec& spec() const { return spec_; }
  // spec().runtime_dir until relocate() moves it (as QemuVm::relocate: the directory is renamed).
  std::string runtime_dir() const;
  Result<void> relocate(const std::string& runtime_dir);
  VmRunState run_state() const;
  bool exited() const { return run_state() == VmRunState::kExited; }

  // The monitor exits (the guest powered off, crashed, someone killed it): exit_fd() turns readable and the
  // agent channel closes. Later calls change nothing.
  void exit(std::string reason, ExitStatus status = ExitStatus::exited(0));
  // The guest's agent drops its channel (as a restarted agent would); the VM keeps running.
  void drop_agent_channel();
  void set_reaction(agent::MessageType type, AgentReaction reaction);
  void set_save_error(std::optional<Error> error);

  // What the agent was asked, in order, one line each: "HELLO", "SET_HOSTNAME web", "MOUNT kilnshare0
  // /mnt/hgfs/data", "SET_CLOCK", "RUN echo hi", "SHUTDOWN".
  std::vector<std::string> requests() const;
  // Agent channels connected so far.
  int agent_connections() const;
  // What each disk slot holds now (the spec's disks, then what swap_disk put there; a placeholder has no
  // path), and the shares with the entries they have now (the spec's, then those add_share_entries added).
  std::vector<DiskSpec> disks() const;
  std::vector<ShareSpec> shares() const;
  // What swap_disk and add_share_entries did, in order, one line each: "swap 1 /layer.img rw", "swap 0
  // placeholder ro", "share 0 data=/src/data conf=/src/conf:ro".
  std::vector<std::string> changes() const;

  // For FakeVm (fake_engine.cc).
  Result<UniqueFd> connect_agent();
  Result<void> set_paused(bool paused);
  int exit_fd() const { return exited_.get(); }
  std::string exit_reason() const;
  std::optional<ExitStatus> exit_status() const;
  // Writes the VM's fake state into `dir` and exits; with `memory_file`, as Engine::suspend_running does (a
  // state restored by mapping DIR/memory: the restored VM's RAM is that file, private).
  Result<void> save_state(const std::string& dir, bool memory_file = false);
  // As QemuVm's, with the same checks (engine/disk_slots.h, engine/share_entries.h); nothing is mounted.
  Result<void> swap_disk(size_t slot, const DiskSpec& disk);
  Result<void> add_share_entries(size_t share, const std::vector<ShareEntry>& entries);
  // The slots as the guest saw them (a clone's are its template's); set by the engine.
  void set_disk_slots(std::vector<DiskSlot> slots);

 private:
  struct Channel;
  void serve_agent();
  // Reads what the host sent and answers it; false when the channel must close.
  bool read_and_answer(Channel& channel);
  void handle(Channel& channel, const agent::Frame& frame);
  void answer(Channel& channel, const agent::Frame& frame, const std::string& request);
  void run_builtin(Channel& channel, const agent::Frame& frame, const agent::BuiltinSpec& builtin);
  void run_process(Channel& channel, const agent::Frame& frame);
  void wake();
  // Appends a line to the VM's console log (runtime_dir/console.log).
  void note_on_console(std::string_view line);

  const pid_t pid_;
  const VmSpec spec_;
  UniqueFd exited_;  // eventfd, written once at exit and never read: readable from then on
  UniqueFd wakeup_;  // eventfd: the agent thread re-reads the state below

  mutable std::mutex mutex_;
  FakeScript script_;
  VmRunState state_ = VmRunState::kRunning;
  std::string runtime_dir_;
  std::string exit_reason_;
  std::optional<ExitStatus> exit_status_;
  UniqueFd incoming_;  // the agent's end of a newly connected channel, for the agent thread to take
  bool drop_channel_ = false;
  int connections_ = 0;
  std::vector<std::string> requests_;
  std::vector<DiskSlot> slots_;
  std::vector<DiskSpec> disks_;
  std::vector<ShareSpec> shares_;
  std::vector<std::string> changes_;
  bool stopping_ = false;
  bool agent_busy_ = false;  // the agent thread is answering a batch of frames
  std::condition_variable agent_idle_;

  std::thread agent_thread_;  // last: started once everything above exists
};

class FakeEngine final : public Engine {
 public:
  FakeEngine() = default;
  ~FakeEngine() override = default;

  std::string_view name() const override { return "fake"; }
  Accelerator accelerator() const override { return Accelerator::kTcg; }
  Result<std::unique_ptr<VmInstance>> launch(const VmSpec& spec) override;
  Result<std::unique_ptr<VmInstance>> adopt(const VmSpec& spec, pid_t monitor_pid) override;
  // Fork as QemuEngine's contract says, with a template that is a small JSON file: the template VM is a
  // fake machine whose agent session the caller settles (the fake agent writes "host session ended" to the
  // console when a host hangs up, as kiln-agent does); a clone is a fake machine launched from the spec.
  Result<std::string> template_key(const VmSpec& spec) override;
  Result<VmTemplate> build_template(const VmSpec& spec, const std::string& dir,
                                    const std::function<Result<void>(VmInstance&)>& until_idle) override;
  Result<VmTemplate> open_template(const std::string& dir) override;
  Result<std::unique_ptr<VmInstance>> fork(const VmTemplate& from, const VmSpec& spec) override;
  // As QemuEngine's: refuses a VM whose memory is not a shared memfd (a fork), pauses it around
  // while_paused, writes a fake template with `key`, resumes it.
  Result<VmTemplate> snapshot_running(VmInstance& vm, const std::string& dir, const std::string& key,
                                      const std::function<Result<void>()>& while_paused) override;
  // As QemuEngine's: kUnsupported for a VM whose memory is not a shared memfd (the caller streams it with
  // save_state), else the machine's state saved with a memory file, and the machine exits.
  Result<void> suspend_running(VmInstance& vm, const std::string& dir) override;

  // Applies to later launches.
  void set_script(FakeScript script);
  // nullptr if no machine has that pid.
  std::shared_ptr<FakeMachine> machine(pid_t pid) const;
  // Calls of launch(), failed ones included.
  int launches() const;
  // Calls of build_template() and fork(), failed ones included.
  int template_builds() const;
  int forks() const;
  // Calls of snapshot_running(), failed ones included; whether the VM was paused during the last
  // while_paused.
  int snapshots() const;
  bool paused_while_snapshotting() const;
  // Calls of suspend_running(), refused ones included.
  int suspends() const;
  // Machines whose monitor has not exited.
  int running_machines() const;

 private:
  mutable std::mutex mutex_;
  FakeScript script_;
  std::map<pid_t, std::shared_ptr<FakeMachine>> machines_;
  pid_t next_pid_ = 1'000'000;  // above any real pid a test host hands out in practice; never signalled
  int launches_ = 0;
  int template_builds_ = 0;
  int forks_ = 0;
  int snapshots_ = 0;
  int suspends_ = 0;
  bool paused_while_snapshotting_ = false;
};

}  // namespace kiln::engine::fake

// ChildProcess: owns one spawned child. Its destructor kills (SIGKILL) and reaps a child still running, so
// no code path leaks a zombie; every fd Kiln opens is close-on-exec and the child's other descriptors are
// closed at exec, so no fd leaks into children. One owner thread per object.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln {

// How a process ended: exited with a code, or was killed by a signal.
class ExitStatus {
 public:
  static ExitStatus exited(int code) { return ExitStatus(false, code); }
  static ExitStatus signaled(int signal) { return ExitStatus(true, signal); }
  // From a waitpid() status word.
  static ExitStatus from_wait_status(int status);

  bool is_signaled() const { return signaled_; }
  bool success() const { return !signaled_ && value_ == 0; }
  // Exit code, or 0 when killed by a signal.
  int code() const { return signaled_ ? 0 : value_; }
  // Terminating signal, or 0 when it exited.
  int signal() const { return signaled_ ? value_ : 0; }
  // What a shell reports in $?: the code, or 128+N for signal N.
  int shell_code() const { return signaled_ ? 128 + value_ : value_; }
  // "exited with code 3" / "killed by signal 9 (Killed)".
  std::string describe() const;

  bool operator==(const ExitStatus&) const = default;

 private:
  ExitStatus(bool signaled, int value) : signaled_(signaled), value_(value) {}
  bool signaled_;
  int value_;
};

enum class Stdio {
  kInherit,  // the parent's own descriptor
  kNull,     // /dev/null
  kPipe,     // a pipe the parent reads/writes through ChildProcess::stdin_pipe() etc.
};

// A host file or directory shown at another path to the child only: the child gets a mount namespace of its
// own (host mounts still propagate into it) in which `source` is bind-mounted, with everything below it, over
// `target` (which must exist and be of the same kind). The host's mount table never changes, and the binds go
// away with the child. Needs CAP_SYS_ADMIN.
struct PrivateBind {
  std::string source;
  std::string target;
  bool read_only = false;  // the whole subtree, enforced by the host kernel
};

struct SpawnOptions {
  std::vector<std::string> argv;                // argv[0] is looked up on PATH when it has no '/'
  std::optional<std::vector<std::string>> env;  // "K=V" entries; nullopt inherits the parent's
  std::string cwd;                              // empty: the parent's
  Stdio stdin_mode = Stdio::kInherit;
  Stdio stdout_mode = Stdio::kInherit;
  Stdio stderr_mode = Stdio::kInherit;
  // When >= 0, the child's stdin/stdout/stderr is this descriptor (overrides the mode above).
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Descriptors the child gets: {parent fd, fd number in the child}. Child numbers must be >= 3 and distinct.
  std::vector<std::pair<int, int>> pass_fds;
  // setsid(): own session and process group, so a terminal's Ctrl-C does not reach the child directly.
  bool new_session = false;
  // Child gets SIGKILL when the spawning *thread* exits (PR_SET_PDEATHSIG). For helpers that must never
  // outlive their owner (e.g. QEMU under `kiln vm run`).
  bool kill_with_parent = false;
  std::vector<PrivateBind> private_binds;
  // A mount namespace of its own (as with private_binds) even with no binds at spawn, so binds can be added
  // while it runs (add_private_binds).
  bool private_mount_namespace = false;
};

class ChildProcess {
 public:
  static Result<ChildProcess> spawn(const SpawnOptions& options);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // A pidfd that becomes readable when the child exits (for poll loops). Owned by this object.
  int pidfd() const { return pidfd_.get(); }
  UniqueFd& stdin_pipe() { return stdin_; }
  UniqueFd& stdout_pipe() { return stdout_; }
  UniqueFd& stderr_pipe() { return stderr_; }

  // Blocks until the child exits; reaps it. Calling again returns the same status.
  Result<ExitStatus> wait();
  // Reaps if it has exited; nullopt while it runs.
  Result<std::optional<ExitStatus>> try_wait();
  // Waits at most `timeout`; nullopt if still running then.
  Result<std::optional<ExitStatus>> wait_for(std::chrono::milliseconds timeout);
  // Sends `signal` unless the child was already reaped (then a no-op).
  Result<void> send_signal(int signal);
  // SIGTERM, wait up to `grace`, then SIGKILL; returns how it ended.
  Result<ExitStatus> terminate(std::chrono::milliseconds grace);
  // Forget the child: it keeps running and this object no longer kills or reaps it.
  void detach();

  bool reaped() const { return status_.has_value(); }

 private:
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  void kill_and_reap();

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd stdin_, stdout_, stderr_;
  std::optional<ExitStatus> status_;
};

// Adds `binds` to the mount namespace `mount_namespace` (an open /proc/PID/ns/mnt) of a running process, as
// SpawnOptions::private_binds would have at its spawn: `source` is resolved in this process's namespace and
// bound with everything below it, read-only through the whole subtree when asked. Done by a short-lived
// child (a multithreaded process cannot enter another mount namespace). All or none: binds made before one
// that fails are undone. Needs CAP_SYS_ADMIN. Errors name the source and the cause.
Result<void> add_private_binds(int mount_namespace, const std::vector<PrivateBind>& binds);

struct CommandOutput {
  ExitStatus status = ExitStatus::exited(0);
  std::string stdout_text;
  std::string stderr_text;
};

// Runs argv to completion, feeding `input` to stdin and capturing stdout and stderr (read concurrently, so
// large outputs cannot deadlock).
Result<CommandOutput> run_command(const std::vector<std::string>& argv, std::string_view input = {});
// Runs argv; an error (with the command's stderr) unless it exits 0. Returns stdout.
Result<std::string> run_command_checked(const std::vector<std::string>& argv, std::string_view input = {});

}  // namespace kiln

#include "common/child_process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/errno_text.h"

namespace kiln {

std::string ExitStatus::describe() const {
  if (signaled_) return fmt::format("killed by signal {} ({})", value_, signal_text(value_));
  return fmt::format("exited with code {}", value_);
}

ExitStatus ExitStatus::from_wait_status(int status) {
  if (WIFSIGNALED(status)) return signaled(WTERMSIG(status));
  return exited(WEXITSTATUS(status));
}

namespace {

struct ChildSetup {
  std::vector<char*> argv;
  std::vector<char*> envp;  // empty: inherit
  int stdio_fds[3] = {-1, -1, -1};
  // Where the child first copies each pass_fds descriptor (allocated before fork: the child may not).
  std::vector<int> staged;
  int stage_base = 3;  // above every child fd number, so staging never lands on a target
};

// Runs in the forked child: only async-signal-safe calls. Reports a failure's errno on `error_fd`.
[[noreturn]] void exec_child(const SpawnOptions& options, ChildSetup& setup, int error_fd) {
  // `item`: which private bind failed, for the parent's message.
  auto fail = [error_fd](int stage, int item = 0) {
    int report[3] = {stage, errno, item};
    (void)!::write(error_fd, report, sizeof report);
    ::_exit(127);
  };
  // Signal dispositions and mask are inherited across fork; a child must start clean.
  sigset_t all;
  sigemptyset(&all);
  // The forked child has one thread, and sigprocmask is async-signal-safe (pthread_sigmask is not).
  ::sigprocmask(SIG_SETMASK, &all, nullptr);  // NOLINT(concurrency-mt-unsafe)
  for (int sig = 1; sig < NSIG; ++sig) (void)::signal(sig, SIG_DFL);

  if (options.new_session && ::setsid() < 0) fail(1);
  if (options.kill_with_parent && ::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(2);
  // Mark everything above stderr close-on-exec; the descriptors we keep are dup2'ed below, which clears it.
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(3);
  for (int i = 0; i < 3; ++i) {
    if (setup.stdio_fds[i] >= 0 && ::dup2(setup.stdio_fds[i], i) < 0) fail(4);
  }
  // In two steps: a descriptor that is both one entry's source and another's target (the parent's fd 5 is
  // to become the child's 3 while the parent's 3 becomes its 5) must be read before it is overwritten.
  for (size_t i = 0; i < options.pass_fds.size(); ++i) {
    setup.staged[i] = ::fcntl(options.pass_fds[i].first, F_DUPFD_CLOEXEC, setup.stage_base);
    if (setup.staged[i] < 0) fail(5);
  }
  for (size_t i = 0; i < options.pass_fds.size(); ++i) {
    if (::dup2(setup.staged[i], options.pass_fds[i].second) < 0) fail(5);  // the copy is not close-on-exec
  }
  if (!options.private_binds.empty() || options.private_mount_namespace) {
    if (::unshare(CLONE_NEWNS) != 0) fail(8);
    // Slave, not private: a filesystem the host unmounts later is not kept busy by this namespace's copy.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) fail(8);
    for (size_t i = 0; i < options.private_binds.size(); ++i) {
      const PrivateBind& bind = options.private_binds[i];
      int item = static_cast<int>(i);
      if (::mount(bind.source.c_str(), bind.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
        fail(9, item);
      if (bind.read_only) {
        // mount_setattr makes every mount of the subtree read-only; a remount would cover only the top one.
        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY;
        if (::syscall(SYS_mount_setattr, AT_FDCWD, bind.target.c_str(), AT_RECURSIVE, &attr, sizeof attr) !=
            0)
          fail(9, item);
      }
    }
  }
  if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) fail(6);
  if (setup.envp.empty()) {
    ::execvp(setup.argv[0], setup.argv.data());
  } else {
    ::execvpe(setup.argv[0], setup.argv.data(), setup.envp.data());
  }
  fail(7);
  ::_exit(127);
}

const char* describe_stage(int stage) {
  switch (stage) {
    case 1:
      return "setsid";
    case 2:
      return "prctl(PR_SET_PDEATHSIG)";
    case 3:
      return "close_range";
    case 4:
      return "redirect stdio";
    case 5:
      return "pass descriptor";
    case 6:
      return "chdir";
    case 8:
      return "make a mount namespace for";

    default:
      return "exec";
  }
}

Result<UniqueFd> open_dev_null(int flags) {
  UniqueFd fd(::open("/dev/null", flags | O_CLOEXEC));
  if (!fd) return Error::last_os_error("open /dev/null");
  return fd;
}

// What a forked child wrote on its error pipe before exec (or its own end): {step, errno, index}, or
// nothing (0 bytes) when all went well. Retries on EINTR.
ssize_t read_child_report(int fd, int (&report)[3]) {
  ssize_t got;
  do {
    got = ::read(fd, report, sizeof report);
  } while (got < 0 && errno == EINTR);
  return got;
}

}  // namespace

Result<ChildProcess> ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return Error::invalid_argument("spawn: empty argv");
  ChildSetup setup;
  for (auto [parent_fd, child_fd] : options.pass_fds) {
    if (child_fd < 3 || parent_fd < 0) return Error::invalid_argument("spawn: bad pass_fds entry");
    setup.stage_base = std::max(setup.stage_base, child_fd + 1);
  }
  setup.staged.resize(options.pass_fds.size(), -1);

  // Everything the child needs is prepared before fork: the child may not allocate.
  std::vector<std::string> env_copy = options.env.value_or(std::vector<std::string>{});
  for (const auto& arg : options.argv) setup.argv.push_back(const_cast<char*>(arg.c_str()));
  setup.argv.push_back(nullptr);
  if (options.env) {
    for (auto& entry : env_copy) setup.envp.push_back(entry.data());
    setup.envp.push_back(nullptr);
  }

  // Pipes/null devices the child's stdio will point at; the parent keeps the other ends.
  UniqueFd child_side[3];
  UniqueFd parent_side[3];
  const Stdio modes[3] = {options.stdin_mode, options.stdout_mode, options.stderr_mode};
  const int given_fds[3] = {options.stdin_fd, options.stdout_fd, options.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    if (given_fds[i] >= 0) {
      setup.stdio_fds[i] = given_fds[i];
      continue;
    }
    if (modes[i] == Stdio::kNull) {
      child_side[i] = KILN_TRY(open_dev_null(i == 0 ? O_RDONLY : O_WRONLY));
    } else if (modes[i] == Stdio::kPipe) {
      Pipe pipe = KILN_TRY(make_pipe());
      if (i == 0) {
        child_side[i] = std::move(pipe.read_end);
        parent_side[i] = std::move(pipe.write_end);
      } else {
        child_side[i] = std::move(pipe.write_end);
        parent_side[i] = std::move(pipe.read_end);
      }
    }
    setup.stdio_fds[i] = child_side[i].get();
  }

  Pipe error_pipe = KILN_TRY(make_pipe());
  pid_t pid = ::fork();
  if (pid < 0) return Error::last_os_error("fork");
  if (pid == 0) exec_child(options, setup, error_pipe.write_end.get());

  error_pipe.write_end.reset();
  int report[3] = {0, 0, 0};
  ssize_t got = read_child_report(error_pipe.read_end.get(), report);

  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  ChildProcess child(pid, std::move(pidfd));
  if (got == static_cast<ssize_t>(sizeof report)) {
    (void)child.wait();
    if (report[0] == 9) {
      const PrivateBind& bind = options.private_binds.at(static_cast<size_t>(report[2]));
      return Error::from_errno(fmt::format("bind-mount {} for {}", bind.source, options.argv[0]), report[1]);
    }
    return Error::from_errno(fmt::format("{} {}", describe_stage(report[0]), options.argv[0]), report[1]);
  }
  if (!child.pidfd_) {
    // Only possible on kernels before 5.3; Kiln needs a newer one anyway.
    return Error::last_os_error("pidfd_open");
  }
  child.stdin_ = std::move(parent_side[0]);
  child.stdout_ = std::move(parent_side[1]);
  child.stderr_ = std::move(parent_side[2]);
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      stdin_(std::move(other.stdin_)),
      stdout_(std::move(other.stdout_)),
      stderr_(std::move(other.stderr_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    stdin_ = std::move(other.stdin_);
    stdout_ = std::move(other.stdout_);
    stderr_ = std::move(other.stderr_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  kill_and_reap();
}

void ChildProcess::kill_and_reap() {
  if (pid_ > 0 && !status_) {
    (void)::kill(pid_, SIGKILL);
    (void)wait();
  }
  pid_ = -1;
}

Result<ExitStatus> ChildProcess::wait() {
  if (status_) return *status_;
  if (pid_ <= 0) return Error::failed_precondition("wait: no child");
  int status = 0;
  for (;;) {
    pid_t got = ::waitpid(pid_, &status, 0);
    if (got == pid_) break;
    if (got < 0 && errno == EINTR) continue;
    return Error::last_os_error(fmt::format("waitpid {}", pid_));
  }
  status_ = ExitStatus::from_wait_status(status);
  return *status_;
}

Result<std::optional<ExitStatus>> ChildProcess::try_wait() {
  if (status_) return status_;
  if (pid_ <= 0) return Error::failed_precondition("wait: no child");
  int status = 0;
  pid_t got = ::waitpid(pid_, &status, WNOHANG);
  if (got < 0) return Error::last_os_error(fmt::format("waitpid {}", pid_));
  if (got == 0) return std::optional<ExitStatus>{};
  status_ = ExitStatus::from_wait_status(status);
  return status_;
}

Result<std::optional<ExitStatus>> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto exited = KILN_TRY(try_wait());
    if (exited) return exited;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::optional<ExitStatus>{};
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) return Error::last_os_error("poll pidfd");
  }
}

Result<void> ChildProcess::send_signal(int signal) {
  if (status_ || pid_ <= 0) return ok();
  if (::kill(pid_, signal) != 0 && errno != ESRCH) return Error::last_os_error(fmt::format("kill {}", pid_));
  return ok();
}

Result<ExitStatus> ChildProcess::terminate(std::chrono::milliseconds grace) {
  KILN_TRY(send_signal(SIGTERM));
  if (auto ended = KILN_TRY(wait_for(grace))) return *ended;
  KILN_TRY(send_signal(SIGKILL));
  return wait();
}

void ChildProcess::detach() {
  pid_ = -1;
  pidfd_.reset();
}

namespace {

// What add_private_binds' child reports when a step fails: the step, errno and the bind's index.
enum class BindStep : int { kOpenTree = 1, kReadOnly, kEnterNamespace, kMoveMount };

// Runs in the forked child: raw system calls only (async-signal-safe). Each tree is cloned from this
// namespace before entering the other one; a failed move undoes the moves before it.
[[noreturn]] void bind_in_child(int mount_namespace, const std::vector<PrivateBind>& binds,
                                std::vector<int>& trees, int error_fd) {
  auto fail = [error_fd](BindStep step, size_t item) {
    int report[3] = {static_cast<int>(step), errno, static_cast<int>(item)};
    (void)!::write(error_fd, report, sizeof report);
    ::_exit(127);
  };
  for (size_t i = 0; i < binds.size(); ++i) {
    // OPEN_TREE_CLONE | AT_RECURSIVE: a detached copy of the source and every mount below it (MS_BIND |
    // MS_REC).
    trees[i] = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, binds[i].source.c_str(),
                                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    if (trees[i] < 0) fail(BindStep::kOpenTree, i);
    if (binds[i].read_only) {
      mount_attr attr{};
      attr.attr_set = MOUNT_ATTR_RDONLY;
      if (::syscall(SYS_mount_setattr, trees[i], "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
        fail(BindStep::kReadOnly, i);
    }
  }
  if (::setns(mount_namespace, CLONE_NEWNS) != 0) fail(BindStep::kEnterNamespace, 0);
  for (size_t i = 0; i < binds.size(); ++i) {
    if (::syscall(SYS_move_mount, trees[i], "", AT_FDCWD, binds[i].target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) !=
        0) {
      int saved = errno;
      for (size_t j = 0; j < i; ++j) (void)::umount2(binds[j].target.c_str(), MNT_DETACH);
      errno = saved;
      fail(BindStep::kMoveMount, i);
    }
  }
  ::_exit(0);
}

}  // namespace

Result<void> add_private_binds(int mount_namespace, const std::vector<PrivateBind>& binds) {
  if (binds.empty()) return ok();
  std::vector<int> trees(binds.size(), -1);  // allocated before fork: the child may not
  Pipe error_pipe = KILN_TRY(make_pipe());
  pid_t pid = ::fork();
  if (pid < 0) return Error::last_os_error("fork");
  if (pid == 0) bind_in_child(mount_namespace, binds, trees, error_pipe.write_end.get());
  error_pipe.write_end.reset();
  int report[3] = {0, 0, 0};
  ssize_t got = read_child_report(error_pipe.read_end.get(), report);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Error::last_os_error("wait for the bind helper");
  }
  if (got == static_cast<ssize_t>(sizeof report)) {
    const PrivateBind& bind = binds.at(static_cast<size_t>(report[2]));
    switch (static_cast<BindStep>(report[0])) {
      case BindStep::kOpenTree:
        return Error::from_errno(fmt::format("bind {}: open it", bind.source), report[1]);
      case BindStep::kReadOnly:
        return Error::from_errno(fmt::format("bind {}: make it read-only", bind.source), report[1]);
      case BindStep::kEnterNamespace:
        return Error::from_errno("enter the process's mount namespace", report[1]);
      case BindStep::kMoveMount:
        return Error::from_errno(fmt::format("bind {} over {}", bind.source, bind.target), report[1]);
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error::internal(
        fmt::format("the bind helper {}", ExitStatus::from_wait_status(status).describe()));
  return ok();
}

Result<CommandOutput> run_command(const std::vector<std::string>& argv, std::string_view input) {
  SpawnOptions options;
  options.argv = argv;
  options.stdin_mode = input.empty() ? Stdio::kNull : Stdio::kPipe;
  options.stdout_mode = Stdio::kPipe;
  options.stderr_mode = Stdio::kPipe;
  ChildProcess child = KILN_TRY(ChildProcess::spawn(options));

  CommandOutput output;
  size_t input_done = 0;
  if (child.stdin_pipe()) KILN_TRY(set_nonblocking(child.stdin_pipe().get()));
  // One poll loop over stdin/stdout/stderr: a child that fills one pipe while we block on another would hang.
  while (child.stdout_pipe() || child.stderr_pipe() || child.stdin_pipe()) {
    pollfd fds[3] = {{child.stdout_pipe().get(), POLLIN, 0},
                     {child.stderr_pipe().get(), POLLIN, 0},
                     {child.stdin_pipe().get(), POLLOUT, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("poll");
    }
    UniqueFd* readers[2] = {&child.stdout_pipe(), &child.stderr_pipe()};
    std::string* sinks[2] = {&output.stdout_text, &output.stderr_text};
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[65536];
      ssize_t n = ::read(readers[i]->get(), buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        readers[i]->reset();
      }
    }
    if (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
      ssize_t n = ::write(child.stdin_pipe().get(), input.data() + input_done, input.size() - input_done);
      if (n > 0) input_done += static_cast<size_t>(n);
      if ((n < 0 && errno != EINTR && errno != EAGAIN) || input_done == input.size())
        child.stdin_pipe().reset();
    }
  }
  output.status = KILN_TRY(child.wait());
  return output;
}

Result<std::string> run_command_checked(const std::vector<std::string>& argv, std::string_view input) {
  CommandOutput output = KILN_TRY(run_command(argv, input));
  if (!output.status.success()) {
    std::string detail = output.stderr_text;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    return Error(ErrorCategory::kIo, fmt::format("{} {}{}{}", argv[0], output.status.describe(),
                                                 detail.empty() ? "" : ": ", detail));
  }
  return std::move(output.stdout_text);
}

}  // namespace kiln

#include "agent/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "agent/container_setup.h"
#include "common/log.h"

namespace kiln::agent {

namespace {

// Where the child failed; reported with errno over the error pipe.
enum class Stage : int {
  kSetsid = 1,
  kControllingTty,
  kStdio,
  kCloseFds,
  kGroups,
  kGid,
  kUid,
  kChdir,
  kExec,
  kCapabilities,
  kJoinNamespaces,
  kJoinRoot,
  // ContainerStage values (>= 100) are reported as they are.
};

// The namespaces and root of a running container process that an exec joins (docker exec).
struct JoinTarget {
  UniqueFd mount;
  UniqueFd uts;
  UniqueFd ipc;
  UniqueFd pid;
  UniqueFd root;  // /proc/<pid>/root: the container's root as that process sees it
};

Result<JoinTarget> open_join_target(pid_t pid) {
  JoinTarget target;
  auto open_ns = [pid](const char* name) -> Result<UniqueFd> {
    std::string path = fmt::format("/proc/{}/ns/{}", pid, name);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::last_os_error(fmt::format("open {}", path));
    return fd;
  };
  target.mount = KILN_TRY(open_ns("mnt"));
  target.uts = KILN_TRY(open_ns("uts"));
  target.ipc = KILN_TRY(open_ns("ipc"));
  target.pid = KILN_TRY(open_ns("pid"));
  std::string root = fmt::format("/proc/{}/root", pid);
  target.root = UniqueFd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!target.root) return Error::last_os_error(fmt::format("open {}", root));
  return target;
}

struct ChildPlan {
  std::vector<std::string> candidates;  // executable paths to try in order (PATH search done up front)
  std::vector<char*> argv;
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  std::string cwd;
  int stdio[3] = {-1, -1, -1};
  int tty_slave = -1;
  const ProcessSpec* spec = nullptr;
  std::optional<ContainerPlan> container;
  std::optional<ContainerUser> user;  // a container's user, resolved in its root
  const JoinTarget* join = nullptr;   // set: enter this container instead of making one
};

// mkdir -p for a container's working directory, as Docker creates a missing WorkingDir. Async-signal-safe.
bool make_directories(const std::string& path) {
  char buffer[4096];
  if (path.size() >= sizeof buffer) return false;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    for (size_t j = 0; j < i; ++j) buffer[j] = path[j];
    buffer[i] = '\0';
    if (::mkdir(buffer, 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

std::string find_path(const std::vector<std::string>& env) {
  for (const auto& entry : env) {
    if (entry.starts_with("PATH=")) return entry.substr(5);
  }
  return kDefaultPath;
}

// execvp's search, done before fork because the child may not allocate, and against the *spec's* PATH:
// glibc's execvpe would search the agent's own PATH.
std::vector<std::string> executable_candidates(const std::string& name, const std::string& path) {
  if (name.find('/') != std::string::npos) return {name};
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    out.push_back((dir.empty() ? std::string(".") : dir) + "/" + name);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// docker run --init: this process stays PID 1 of the container as a minimal init (what tini does for Docker):
// it forwards every signal it can catch to the command, reaps every orphan, and exits as the command did. The
// command is its child, which returns from here to exec. Async-signal-safe.
volatile sig_atomic_t g_init_child = 0;

void forward_to_command(int signum) {
  if (g_init_child > 0) ::kill(g_init_child, signum);
}

void run_as_init(int error_fd) {
  pid_t child = ::fork();
  if (child < 0) return;  // no init then: the command runs as PID 1 itself
  if (child == 0) return;
  g_init_child = child;
  ::close(error_fd);  // the command reports its own exec failure; the agent must see EOF once it did
  struct sigaction forward {};
  forward.sa_handler = forward_to_command;
  ::sigemptyset(&forward.sa_mask);
  forward.sa_flags = SA_RESTART;
  for (int sig = 1; sig < 32; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD) continue;
    (void)::sigaction(sig, &forward, nullptr);
  }
  for (;;) {
    int status = 0;
    pid_t reaped = ::waitpid(-1, &status, 0);
    if (reaped < 0 && errno == EINTR) continue;
    if (reaped < 0) ::_exit(1);
    if (reaped != child) continue;  // an orphan the container left: reaped, as an init must
    if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
    ::_exit(128 + WTERMSIG(status));
  }
}

// Runs in the forked child: async-signal-safe calls only.
[[noreturn]] void exec_child(const ChildPlan& plan, int error_fd) {
  auto fail = [error_fd](Stage stage, int errnum) {
    int report[2] = {static_cast<int>(stage), errnum};
    (void)!::write(error_fd, report, sizeof report);
    ::_exit(127);
  };
  // The agent blocks SIGCHLD and ignores SIGPIPE; both survive exec, so reset everything.
  sigset_t none;
  sigemptyset(&none);
  (void)::pthread_sigmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) (void)::signal(sig, SIG_DFL);

  if (::setsid() < 0) fail(Stage::kSetsid, errno);
  if (plan.tty_slave >= 0 && ::ioctl(plan.tty_slave, TIOCSCTTY, 0) != 0) fail(Stage::kControllingTty, errno);
  for (int i = 0; i < 3; ++i) {
    if (::dup2(plan.stdio[i], i) < 0) fail(Stage::kStdio, errno);
  }
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(Stage::kCloseFds, errno);
  if (plan.join) {
    // Already in the container's PID namespace (the parent forked with it as pid_for_children); the rest
    // is joined here, in the single-threaded child, as nsenter does. The root is the process's own view.
    for (auto [fd, type] :
         {std::pair{plan.join->mount.get(), CLONE_NEWNS}, std::pair{plan.join->uts.get(), CLONE_NEWUTS},
          std::pair{plan.join->ipc.get(), CLONE_NEWIPC}}) {
      if (::setns(fd, type) != 0) fail(Stage::kJoinNamespaces, errno);
    }
    if (::fchdir(plan.join->root.get()) != 0 || ::chroot(".") != 0) fail(Stage::kJoinRoot, errno);
    if (!make_directories(plan.cwd)) fail(Stage::kChdir, errno);
  } else if (plan.container) {
    ContainerFailure failure = apply_container_plan(*plan.container);
    if (failure.errnum != 0) fail(static_cast<Stage>(failure.stage), failure.errnum);
    // Created as root, before the switch to the container's user, as Docker creates a missing WorkingDir.
    if (!make_directories(plan.cwd)) fail(Stage::kChdir, errno);
  }
  if (plan.user) {
    const ContainerUser& user = *plan.user;
    static_assert(sizeof(gid_t) == sizeof(uint32_t));
    if (::setgroups(user.groups.size(), reinterpret_cast<const gid_t*>(user.groups.data())) != 0)
      fail(Stage::kGroups, errno);
    if (::setgid(user.gid) != 0) fail(Stage::kGid, errno);
    if (::setuid(user.uid) != 0) fail(Stage::kUid, errno);
  } else {
    // A process run as another user gets no supplementary groups from the agent.
    if ((plan.spec->uid || plan.spec->gid) && ::setgroups(0, nullptr) != 0) fail(Stage::kGroups, errno);
    if (plan.spec->gid && ::setgid(*plan.spec->gid) != 0) fail(Stage::kGid, errno);
    if (plan.spec->uid && ::setuid(*plan.spec->uid) != 0) fail(Stage::kUid, errno);
  }
  if (plan.container) {
    if (int errnum = apply_container_capabilities(*plan.container); errnum != 0)
      fail(Stage::kCapabilities, errnum);
  }
  if (::chdir(plan.cwd.c_str()) != 0) fail(Stage::kChdir, errno);
  if (plan.spec->container && plan.spec->container->init && !plan.join) run_as_init(error_fd);

  int result = ENOENT;
  bool denied = false;
  for (const auto& candidate : plan.candidates) {
    ::execve(candidate.c_str(), plan.argv.data(), plan.envp.data());
    result = errno;
    if (errno == EACCES) {
      denied = true;
    } else if (errno != ENOENT && errno != ENOTDIR) {
      break;  // found but not runnable (ENOEXEC, E2BIG, ...): report that, as execvp does
    }
  }
  fail(Stage::kExec, denied && (result == ENOENT || result == ENOTDIR) ? EACCES : result);
  ::_exit(127);
}

Error describe_failure(Stage stage, int errnum, const ChildPlan& plan) {
  const ProcessSpec& spec = *plan.spec;
  if (plan.container && static_cast<int>(stage) >= static_cast<int>(ContainerStage::kPrivateMounts))
    return describe_container_failure(static_cast<ContainerStage>(stage), errnum, *plan.container);
  switch (stage) {
    case Stage::kExec:
      return Error::from_errno(fmt::format("exec {}", spec.argv[0]), errnum);
    case Stage::kChdir:
      return Error(ErrorCategory::kInvalidArgument,
                   Error::from_errno(fmt::format("chdir {}", plan.cwd), errnum).message());
    case Stage::kGroups:
    case Stage::kGid:
      return Error(ErrorCategory::kInvalidArgument,
                   Error::from_errno(
                       fmt::format("setgid {}", plan.user ? plan.user->gid : spec.gid.value_or(0)), errnum)
                       .message());
    case Stage::kUid:
      return Error(ErrorCategory::kInvalidArgument,
                   Error::from_errno(
                       fmt::format("setuid {}", plan.user ? plan.user->uid : spec.uid.value_or(0)), errnum)
                       .message());
    case Stage::kSetsid:
      return Error::from_errno("setsid", errnum);
    case Stage::kControllingTty:
      return Error::from_errno("set controlling tty", errnum);
    case Stage::kStdio:
      return Error::from_errno("redirect stdio", errnum);
    case Stage::kCloseFds:
      return Error::from_errno("close_range", errnum);
    case Stage::kCapabilities:
      return Error::from_errno("set the container's capabilities", errnum);
    case Stage::kJoinNamespaces:
      return Error::from_errno("enter the container's namespaces", errnum);
    case Stage::kJoinRoot:
      return Error::from_errno("enter the container's root", errnum);
  }
  return Error::from_errno("spawn", errnum);
}

struct Pty {
  UniqueFd master;
  UniqueFd slave;
};

Result<Pty> open_pty(TtySize size) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master) return Error::last_os_error("open /dev/ptmx");
  if (::grantpt(master.get()) != 0) return Error::last_os_error("grantpt");
  if (::unlockpt(master.get()) != 0) return Error::last_os_error("unlockpt");
  char name[128];
  if (::ptsname_r(master.get(), name, sizeof name) != 0) return Error::last_os_error("ptsname");
  UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return Error::last_os_error(fmt::format("open {}", name));
  winsize window{};
  window.ws_row = size.rows;
  window.ws_col = size.cols;
  if (::ioctl(master.get(), TIOCSWINSZ, &window) != 0) return Error::last_os_error("TIOCSWINSZ");
  return Pty{std::move(master), std::move(slave)};
}

}  // namespace

std::vector<std::string> effective_environment(const ProcessSpec& spec) {
  std::vector<std::string> env = spec.env.value_or(std::vector<std::string>{});
  auto has = [&env](std::string_view key) {
    for (const auto& entry : env) {
      if (entry.size() > key.size() && entry.starts_with(key) && entry[key.size()] == '=') return true;
    }
    return false;
  };
  if (!has("PATH")) env.push_back(std::string("PATH=") + kDefaultPath);
  if (spec.tty && !has("TERM")) env.emplace_back("TERM=xterm");
  return env;
}

Result<SpawnedProcess> spawn_process(const ProcessSpec& spec, pid_t join_pid) {
  if (spec.builtin) {
    if (spec.container) return Error::invalid_argument("a builtin cannot run as a container");
    // The agent is its own builtins' program (file_builtins.h): exec'd from /proc/self/exe, which needs no
    // path inside any root; the builtin chroots itself once started.
    ProcessSpec own = spec;
    own.builtin.reset();
    own.argv = {std::string(kSelfExecutable), "--builtin", spec.builtin->name, "--root",
                spec.builtin->root,           "--"};
    own.argv.insert(own.argv.end(), spec.builtin->args.begin(), spec.builtin->args.end());
    return spawn_process(own, 0);
  }
  if (spec.argv.empty()) return Error::invalid_argument("empty argv");
  ChildPlan plan;
  plan.spec = &spec;
  plan.env_storage = effective_environment(spec);
  plan.cwd = spec.cwd.empty() ? "/" : spec.cwd;
  if (spec.container) {
    plan.container = KILN_TRY(plan_container(*spec.container));
    if (join_pid <= 0) KILN_TRY(write_container_files(plan.container->root, spec.container->files));
    plan.user = KILN_TRY(resolve_container_user(plan.container->root, spec.container->user));
    // Docker gives every container process a HOME: the user's, or "/".
    bool has_home = std::any_of(plan.env_storage.begin(), plan.env_storage.end(),
                                [](const std::string& entry) { return entry.starts_with("HOME="); });
    if (!has_home) plan.env_storage.push_back("HOME=" + plan.user->home);
  }
  plan.candidates = executable_candidates(spec.argv[0], find_path(plan.env_storage));
  for (const auto& arg : spec.argv) plan.argv.push_back(const_cast<char*>(arg.c_str()));
  plan.argv.push_back(nullptr);
  // envp points into env_storage: built last, once env_storage no longer grows.
  for (auto& entry : plan.env_storage) plan.envp.push_back(entry.data());
  plan.envp.push_back(nullptr);

  SpawnedProcess spawned;
  UniqueFd child_ends[3];
  Pty pty;
  if (spec.tty) {
    pty = KILN_TRY(open_pty(spec.size));
    plan.tty_slave = pty.slave.get();
    for (int& fd : plan.stdio) fd = pty.slave.get();
  } else {
    Pipe in = KILN_TRY(make_pipe());
    Pipe out = KILN_TRY(make_pipe());
    Pipe err = KILN_TRY(make_pipe());
    child_ends[0] = std::move(in.read_end);
    child_ends[1] = std::move(out.write_end);
    child_ends[2] = std::move(err.write_end);
    spawned.stdin_fd = std::move(in.write_end);
    spawned.stdout_fd = std::move(out.read_end);
    spawned.stderr_fd = std::move(err.read_end);
    for (int i = 0; i < 3; ++i) plan.stdio[i] = child_ends[i].get();
  }

  Pipe error_pipe = KILN_TRY(make_pipe());
  std::optional<JoinTarget> join;
  UniqueFd own_pid_namespace;
  if (join_pid > 0 && plan.container) {
    join = KILN_TRY(open_join_target(join_pid));
    plan.join = &*join;
    own_pid_namespace = UniqueFd(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
    if (!own_pid_namespace) return Error::last_os_error("open /proc/self/ns/pid");
    // Children from now on are born in the container's PID namespace; the agent itself stays where it is.
    if (::setns(join->pid.get(), CLONE_NEWPID) != 0)
      return Error::last_os_error("enter the container's PID namespace");
  }
  // A container's process is cloned into its own namespaces (fork's semantics otherwise: same stack,
  // copy-on-write), so it is PID 1 there while the agent stays its parent and reaps it.
  pid_t pid = plan.container && !plan.join
                  ? static_cast<pid_t>(::syscall(SYS_clone, container_clone_flags() | SIGCHLD, nullptr,
                                                 nullptr, nullptr, nullptr))
                  : ::fork();
  if (own_pid_namespace && ::setns(own_pid_namespace.get(), CLONE_NEWPID) != 0 && pid != 0)
    log::error("could not return to the agent's PID namespace", {{"errno", errno}});
  if (pid < 0) return Error::last_os_error(plan.container ? "clone the container's process" : "fork");
  if (pid == 0) exec_child(plan, error_pipe.write_end.get());

  // The child's ends must close here, or EOF on its output would never come.
  error_pipe.write_end.reset();
  for (auto& end : child_ends) end.reset();
  pty.slave.reset();
  if (spec.tty) spawned.stdout_fd = std::move(pty.master);

  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = ::read(error_pipe.read_end.get(), report, sizeof report);
  } while (got < 0 && errno == EINTR);
  // The failed child is reaped by the Reaper like any other unowned pid.
  if (got == static_cast<ssize_t>(sizeof report))
    return describe_failure(static_cast<Stage>(report[0]), report[1], plan);

  spawned.pid = pid;
  for (UniqueFd* fd : {&spawned.stdin_fd, &spawned.stdout_fd, &spawned.stderr_fd}) {
    if (*fd) KILN_TRY(set_nonblocking(fd->get()));
  }
  return spawned;
}

}  // namespace kiln::agent

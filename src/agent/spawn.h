// Starting a workload process for kiln-agent: fork/exec with pipes, or with a pty (setsid + TIOCSCTTY, the
// slave as stdin/stdout/stderr) when the spec asks for a tty. The caller registers the pid with the Reaper
// right away; this code never waits for the child (see reaper.h). Agent thread only.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "agent/protocol/messages.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

// The PATH a process gets when the host sends none (busybox's layout and the usual FHS directories).
inline constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The agent's own executable, which runs its builtins (ProcessSpec::builtin).
inline constexpr std::string_view kSelfExecutable = "/proc/self/exe";

struct SpawnedProcess {
  pid_t pid = -1;
  UniqueFd stdin_fd;   // pipe write end; invalid with a tty (write to `output` instead)
  UniqueFd stdout_fd;  // pipe read end, or the pty master with a tty
  UniqueFd stderr_fd;  // pipe read end; invalid with a tty (merged into the pty)
};

// The environment a spec runs with: its env (or none), plus PATH when missing, plus TERM=xterm for a tty.
std::vector<std::string> effective_environment(const ProcessSpec& spec);

// Starts `spec`. Failures in the child before or at exec come back as errors with the errno text, e.g.
// "exec foo: No such file or directory" (kNotFound: shells exit 127) or "exec /x: Permission denied"
// (kPermissionDenied: 126). A bad cwd, uid or gid is kInvalidArgument. All returned fds are non-blocking.
// A spec with a builtin runs `kiln-agent --builtin NAME --root ROOT -- ARGS...` from kSelfExecutable.
// `join_pid` > 0 (with spec.container): the process enters that running container process's namespaces and
// root instead of getting new ones (docker exec).
Result<SpawnedProcess> spawn_process(const ProcessSpec& spec, pid_t join_pid = 0);

}  // namespace kiln::agent

// Turning a freshly cloned child into a container's process (ContainerSpec in protocol/messages.h): the
// mounts inside its root, its hostname, pivot_root into the root, and its capability sets. The plan is built
// in the agent before the clone (it allocates); apply runs in the child between clone and exec and only makes
// async-signal-safe system calls. Agent thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/protocol/messages.h"
#include "common/error.h"

namespace kiln::agent {

// The namespaces a container's process is cloned into (its own PID namespace makes it PID 1 there).
int container_clone_flags();

struct ContainerPlan {
  struct Mount {
    std::string source;
    std::string target;  // absolute host (guest-VM) path under the root
    std::string fstype;
    unsigned long flags = 0;
    std::string data;
  };
  struct Node {
    std::string path;
    mode_t mode = 0;
    dev_t device = 0;
  };
  struct Link {
    std::string target;
    std::string path;
  };
  std::string root;
  std::string hostname;
  std::vector<std::string> directories;  // created (if missing) before the mounts
  std::vector<Mount> mounts;             // in order
  std::vector<Node> nodes;               // device nodes in the container's /dev
  std::vector<Link> links;               // /dev/fd, /dev/ptmx, ...
  std::vector<Mount> late_mounts;        // after the nodes exist (devpts, /dev/shm)
  bool read_only_root = false;
  bool privileged = false;
  uint64_t capabilities = 0;  // bit N = capability N kept
  int last_capability = 40;
};

// kInvalidArgument for an unknown capability name or a root that is not a directory.
Result<ContainerPlan> plan_container(const ContainerSpec& spec);

// Where the child failed, for the error report.
enum class ContainerStage : int {
  kPrivateMounts = 100,
  kBindRoot,
  kMkdir,
  kMount,
  kMknod,
  kSymlink,
  kHostname,
  kPivotRoot,
  kReadOnlyRoot,
  kBoundingSet,
};
struct ContainerFailure {
  ContainerStage stage;
  int errnum;
};

// In the cloned child, before setuid and exec. Returns the failure, or stage 0 on success.
ContainerFailure apply_container_plan(const ContainerPlan& plan);
// In the child after setuid: the permitted, effective and inheritable sets cut to the plan's (a no-op for
// a privileged container). Returns errno, 0 on success.
int apply_container_capabilities(const ContainerPlan& plan);
// A sentence for a failure reported by the child.
Error describe_container_failure(ContainerStage stage, int errnum, const ContainerPlan& plan);

// A container's user as Docker resolves `-u` (libcontainer's GetExecUser): a name must be in the root's
// /etc/passwd, a group name in its /etc/group, a number need not be; without a group the user's primary
// group (0 for an unknown uid); supplementary groups are those /etc/group lists the user name in.
struct ContainerUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
  std::string home = "/";  // from /etc/passwd; "/" when the user has no entry
};
// Writes ContainerSpec::files into `root` (symlinks resolved inside it: a hostile image cannot aim them out).
Result<void> write_container_files(const std::string& root, const std::map<std::string, std::string>& files);

// The files are read inside `root` (symlinks resolved as if `root` were "/"). kInvalidArgument in Docker's
// words: "unable to find user NAME: no matching entries in passwd file".
Result<ContainerUser> resolve_container_user(const std::string& root, std::string_view user);

}  // namespace kiln::agent

// ContainerManager's views into a running container's VM: its processes (docker top) and resource use
// (docker stats). Both are read in the VM by a helper process outside the container (the guest's own
// busybox), so they work on images that have no `ps` at all.
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "common/stdcopy.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/container_runtime.h"

namespace kiln::daemon::containers {
namespace {

constexpr auto kProbeTimeout = std::chrono::seconds(10);

// One line per process of the container (those in a PID namespace other than the VM's own): pid, ppid, uid,
// utime+stime ticks, start ticks, tty nr, and the command line. The VM runs nothing else in another
// namespace.
constexpr std::string_view kProcessListScript = R"(own=$(readlink /proc/1/ns/pid)
for dir in /proc/[0-9]*; do
  ns=$(readlink $dir/ns/pid 2>/dev/null) || continue
  [ "$ns" = "$own" ] && continue
  stat=$(cat $dir/stat 2>/dev/null) || continue
  uid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' $dir/status)
  rest=${stat##*) }
  set -- $rest
  cmd=$(tr '\0' ' ' < $dir/cmdline)
  [ -n "$cmd" ] || cmd="[${stat#*(}"
  echo "${dir#/proc/} $2 $uid $(( ${12} + ${13} )) ${20} $5 $cmd"
done
)";

std::string clock_text(int64_t seconds) {
  return fmt::format("{:02}:{:02}:{:02}", seconds / 3600, (seconds / 60) % 60, seconds % 60);
}

}  // namespace

Result<std::string> ContainerManager::run_in_vm(const ContainerRecord& container,
                                                std::vector<std::string> argv) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return Error::last_os_error("socketpair");
  UniqueFd mine(pair[0]);
  agent::ExecIo io{.client = UniqueFd(pair[1]), .tty = false, .attach_stdin = false};
  agent::ProcessSpec spec{.argv = std::move(argv)};
  auto handle = KILN_TRY(vms_.exec(container.vm_id, spec, io));
  std::string out;
  stdcopy::Demuxer demuxer;
  std::string buffer(16 * 1024, '\0');
  timeval timeout{.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kProbeTimeout).count(),
                  .tv_usec = 0};
  (void)::setsockopt(mine.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  for (;;) {
    ssize_t n = ::read(mine.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    demuxer.feed(std::string_view(buffer.data(), static_cast<size_t>(n)),
                 [&](int stream, std::string_view data) {
                   if (stream == stdcopy::kStdout) out.append(data);
                   return true;
                 });
  }
  auto status = KILN_TRY(handle.wait(kProbeTimeout));
  if (!status.success())
    return Error::internal(fmt::format("reading the container's VM failed ({})", status.describe()));
  return out;
}

Result<ContainerTop> ContainerManager::top(const std::string& reference) {
  auto container = KILN_TRY(store_.resolve(reference));
  if (container.state != ContainerState::kRunning && container.state != ContainerState::kPaused)
    return Error::failed_precondition(fmt::format("Container {} is not running", container.id));
  if (container.state == ContainerState::kPaused)
    return Error::failed_precondition(fmt::format("Container {} is paused", container.id));
  std::string listing = KILN_TRY(run_in_vm(container, {"sh", "-c", std::string(kProcessListScript)}));
  long ticks = ::sysconf(_SC_CLK_TCK);  // the guest kernel's USER_HZ is the same 100
  if (ticks <= 0) ticks = 100;
  ContainerTop top{.titles = {"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}};
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string pid, ppid, uid, cpu, start, tty;
    fields >> pid >> ppid >> uid >> cpu >> start >> tty;
    std::string command;
    std::getline(fields, command);
    while (!command.empty() && command.front() == ' ') command.erase(0, 1);
    while (!command.empty() && command.back() == ' ') command.pop_back();
    int64_t cpu_seconds = 0;
    try {
      cpu_seconds = std::stoll(cpu) / ticks;
    } catch (...) {  // NOLINT(bugprone-empty-catch): a process that vanished mid-read shows 0
    }
    top.processes.push_back({uid == "0" ? "root" : uid, pid, ppid, "0", "", tty == "0" ? "?" : "pts/" + tty,
                             clock_text(cpu_seconds), command});
  }
  return top;
}

Result<ContainerStats> ContainerManager::stats(const std::string& reference) {
  auto container = KILN_TRY(store_.resolve(reference));
  ContainerStats stats;
  stats.read = std::chrono::system_clock::now();
  auto vm = KILN_TRY(vms_.inspect(container.vm_id));
  stats.memory_limit_bytes = vm.memory_mib << 20;
  stats.online_cpus = vm.cpus;
  // The host's total CPU time, in nanoseconds, as docker stats' system_cpu_usage.
  {
    std::ifstream proc_stat("/proc/stat");
    std::string cpu;
    proc_stat >> cpu;
    uint64_t total = 0;
    for (uint64_t value = 0; proc_stat >> value;) total += value;
    long ticks = ::sysconf(_SC_CLK_TCK);
    stats.system_cpu_ns = total * (1'000'000'000 / static_cast<uint64_t>(ticks > 0 ? ticks : 100));
  }
  if (container.state != ContainerState::kRunning || container.pid <= 0) return stats;
  // CPU: the VM monitor's own time (the guest's vCPUs are its threads).
  {
    std::ifstream monitor(fmt::format("/proc/{}/stat", container.pid));
    std::string text((std::istreambuf_iterator<char>(monitor)), {});
    size_t close = text.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(text.substr(close + 2));
      std::string skip;
      uint64_t user = 0, system = 0;
      for (int i = 0; i < 11; ++i) fields >> skip;
      fields >> user >> system;
      long ticks = ::sysconf(_SC_CLK_TCK);
      uint64_t tick_ns = 1'000'000'000 / static_cast<uint64_t>(ticks > 0 ? ticks : 100);
      stats.cpu_user_ns = user * tick_ns;
      stats.cpu_kernel_ns = system * tick_ns;
    }
  }
  // Memory in use as the guest sees it, against the VM's size.
  auto meminfo = run_in_vm(container, {"cat", "/proc/meminfo"});
  if (meminfo) {
    std::istringstream lines(*meminfo);
    uint64_t total = 0, available = 0;
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      std::string key;
      uint64_t kib = 0;
      fields >> key >> kib;
      if (key == "MemTotal:") total = kib;
      if (key == "MemAvailable:") available = kib;
    }
    stats.memory_usage_bytes = (total > available ? total - available : 0) << 10;
  }
  auto listing = run_in_vm(container, {"sh", "-c", std::string(kProcessListScript)});
  if (listing) stats.pids = static_cast<uint64_t>(std::count(listing->begin(), listing->end(), '\n'));
  return stats;
}

}  // namespace kiln::daemon::containers

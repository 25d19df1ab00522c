// ContainerManager's file operations (docker cp, export, diff): the agent's file builtins
// (src/agent/file_builtins.h) run as processes in the container's VM, chrooted into its root
// (/kiln/rootfs, where the agent also mounts its volumes and binds) or, for diff, over the overlay's upper
// and lower directories. The tar bytes travel on the process's stdin/stdout over the agent channel, with its
// flow control; the builtin's exit code says which of dockerd's errors to give.
#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>

#include <thread>

#include "agent/file_builtins.h"
#include "common/log.h"
#include "common/stdcopy.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/container_runtime.h"

namespace kiln::daemon::containers {
namespace {

constexpr std::string_view kUpperInGuest = "/kiln/layer/upper";
constexpr std::string_view kLowerInGuest = "/kiln/image";
constexpr size_t kStderrLimit = 64 * 1024;

}  // namespace

Result<std::unique_ptr<ContainerFiles>> ContainerManager::open_files(const std::string& reference) {
  auto found = KILN_TRY(store_.resolve(reference));
  std::unique_ptr<ContainerFiles> files(new ContainerFiles(*this, reference));
  files->runtime_ = runtime(found.id);
  files->lock_ = std::unique_lock(files->runtime_->lock);
  files->container_ = KILN_TRY(load(*files->runtime_, found.id));
  const ContainerRecord& container = files->container_;
  if (files->runtime_->removing || container.state == ContainerState::kRemoving)
    return Error::failed_precondition(fmt::format("container {} is marked for removal", container.id));
  // A paused container's whole VM is frozen: nothing in it can read the files until it is unpaused.
  if (container.state == ContainerState::kPaused)
    return Error::failed_precondition(fmt::format(
        "Container {} is paused, unpause the container before copying files (Kiln pauses the whole VM)",
        container.id));
  if (container.state == ContainerState::kRunning) {
    // Its VM is up: the container's lock is not needed (and would hold up a stop or kill for as long as a
    // client reads an export). A VM that stops meanwhile ends the builtin with kUnavailable.
    files->lock_.unlock();
  } else {
    KILN_TRY_CONTEXT(vms_.start(container.vm_id, container.id), "start the container's VM for its files");
    files->started_vm_ = true;
  }
  return files;
}

ContainerFiles::~ContainerFiles() {
  if (!started_vm_) return;
  // The VM ran only for the files: no process exit, restart or event belongs to the container.
  if (auto stopped = manager_.vms_.stop(container_.vm_id, manager_.config_.vm_stop_grace); !stopped)
    log::warn("container VM did not stop after a file operation",
              {{"id", container_.id}, {"error", stopped.error().message()}});
}

Result<void> ContainerFiles::run(const std::string& builtin, std::vector<std::string> args, std::string root,
                                 const ArchiveSource* source, const ArchiveSink& sink,
                                 const std::string& path) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return Error::last_os_error("socketpair");
  UniqueFd mine(pair[0]);
  agent::ExecIo io{.client = UniqueFd(pair[1]), .tty = false, .attach_stdin = source != nullptr};
  agent::ProcessSpec spec{
      .builtin = agent::BuiltinSpec{.name = builtin, .args = std::move(args), .root = std::move(root)}};
  auto handle = KILN_TRY(manager_.vms_.exec(container_.vm_id, spec, io));

  // stdin (PUT) from its own thread, so the output is read meanwhile and an early failure ends both.
  std::thread writer;
  std::optional<Error> input_error;
  if (source) {
    writer = std::thread([&] {
      std::string buffer(128 * 1024, '\0');
      for (;;) {
        auto n = (*source)(buffer.data(), buffer.size());
        if (!n) {
          input_error = n.error();
          break;
        }
        if (*n == 0) break;
        if (!send_all(mine.get(), std::string_view(buffer.data(), *n))) break;  // the builtin has ended
      }
      ::shutdown(mine.get(), SHUT_WR);
    });
  }
  std::string errors;
  bool sink_stopped = false;
  stdcopy::Demuxer demuxer;
  std::string buffer(128 * 1024, '\0');
  for (;;) {
    ssize_t n = ::read(mine.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    demuxer.feed(std::string_view(buffer.data(), static_cast<size_t>(n)),
                 [&](int stream, std::string_view data) {
                   if (stream == stdcopy::kStderr) {
                     if (errors.size() < kStderrLimit)
                       errors.append(data.substr(0, kStderrLimit - errors.size()));
                   } else if (!sink_stopped && !sink(data)) {
                     sink_stopped = true;
                   }
                   return !sink_stopped;
                 });
    if (sink_stopped) {
      (void)handle.signal(SIGKILL);
      break;
    }
  }
  if (writer.joinable()) {
    // A client still sending after the builtin ended: stop reading it.
    ::shutdown(mine.get(), SHUT_RDWR);
    writer.join();
  }
  auto status = KILN_TRY(handle.wait(std::chrono::minutes(5)));
  if (sink_stopped) return Error::cancelled("the client went away");
  if (input_error) return *input_error;
  while (!errors.empty() && errors.back() == '\n') errors.pop_back();
  if (status.success()) return ok();
  switch (status.is_signaled() ? -1 : status.code()) {
    case static_cast<int>(agent::BuiltinExit::kNotFound):
      return Error::not_found(fmt::format("Could not find the file {} in container {}", path, reference_));
    case static_cast<int>(agent::BuiltinExit::kNotADirectory):
      return Error::internal(errors);
    case static_cast<int>(agent::BuiltinExit::kBadArchive):
      return Error::internal(fmt::format("Error processing tar file(exit status 1): {}", errors));
    default:
      return Error::internal(errors.empty() ? fmt::format("{} failed ({})", builtin, status.describe())
                                            : errors);
  }
}

Result<std::string> ContainerFiles::stat(const std::string& path) {
  std::string out;
  KILN_TRY(run(
      "archive-stat", {path}, std::string(kContainerRootInGuest), nullptr,
      [&out](std::string_view data) {
        out.append(data);
        return true;
      },
      path));
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

Result<void> ContainerFiles::get_archive(const std::string& path, const ArchiveSink& sink) {
  return run("archive-get", {path}, std::string(kContainerRootInGuest), nullptr, sink, path);
}

Result<void> ContainerFiles::put_archive(const std::string& path, bool no_overwrite_dir_non_dir,
                                         bool copy_uid_gid, const ArchiveSource& source) {
  std::vector<std::string> args{path};
  if (no_overwrite_dir_non_dir) args.emplace_back("--no-overwrite-dir-non-dir");
  if (copy_uid_gid) {
    args.emplace_back("--chown-user");
    args.push_back(container_.config.user.empty() ? "0:0" : container_.config.user);
  }
  return run(
      "archive-put", std::move(args), std::string(kContainerRootInGuest), &source,
      [](std::string_view) { return true; }, path);
}

Result<void> ContainerFiles::export_root(const ArchiveSink& sink) {
  return run("export", {}, std::string(kContainerRootInGuest), nullptr, sink, "/");
}

Result<std::vector<ContainerChange>> ContainerFiles::changes() {
  std::string out;
  KILN_TRY(run(
      "diff", {std::string(kUpperInGuest), std::string(kLowerInGuest)}, "", nullptr,
      [&out](std::string_view data) {
        out.append(data);
        return true;
      },
      "/"));
  std::vector<ContainerChange> changes;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string_view line(out.data() + start, end - start);
    start = end + 1;
    if (line.size() < 3 || line[1] != ' ') continue;
    ContainerChange::Kind kind = line[0] == 'A'   ? ContainerChange::Kind::kAdded
                                 : line[0] == 'D' ? ContainerChange::Kind::kDeleted
                                                  : ContainerChange::Kind::kModified;
    changes.push_back({.path = std::string(line.substr(2)), .kind = kind});
  }
  return changes;
}

}  // namespace kiln::daemon::containers

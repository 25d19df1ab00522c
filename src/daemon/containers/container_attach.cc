// ContainerManager::attach: a hijacked client connection joined to a container's stdio (docker attach, and
// docker run's attach before it starts the container). Runs on the connection's thread until the run ends,
// the client detaches (Ctrl-P Ctrl-Q by default) or goes away.
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "common/log.h"
#include "common/stdcopy.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/container_runtime.h"

namespace kiln::daemon::containers {
namespace {

constexpr std::string_view kDefaultDetachKeys = "\x10\x11";  // ctrl-p, ctrl-q

// A client that closed both directions (or reset) is gone; one that only closed its input is still reading.
bool client_gone(int fd) {
  pollfd polled{.fd = fd, .events = 0, .revents = 0};
  return ::poll(&polled, 1, 0) > 0 && (polled.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace

Result<ContainerRecord> ContainerManager::check_attach(const std::string& reference,
                                                       const AttachOptions& options) {
  auto container = KILN_TRY(store_.resolve(reference));
  // A stopped container may be attached to: `docker start -a` attaches first, then starts it. (The
  // "start it first" refusal is the docker CLI's own, for `docker attach`.)
  if (container.state == ContainerState::kDead && options.stream)
    return Error::failed_precondition("You cannot attach to a dead container");
  if (container.state == ContainerState::kPaused && options.stream)
    return Error::failed_precondition(
        fmt::format("You cannot attach to a paused container, unpause it first"));
  return container;
}

void ContainerManager::attach(const std::string& id, UniqueFd fd, std::string already_read,
                              const AttachOptions& options) {
  auto found = store_.get(id);
  if (!found || !*found) return;
  const ContainerRecord& container = **found;
  auto client = std::make_shared<AttachedClient>();
  client->fd = std::move(fd);
  client->tty = container.config.tty;
  client->want_stdout = options.stdout;
  client->want_stderr = options.stderr;
  int socket = client->fd.get();

  if (options.logs) {
    LogReadOptions read{.show_stdout = options.stdout, .show_stderr = options.stderr};
    (void)read_json_file_log(log_path(id), read, nullptr, {}, [&](const LogEntry& entry) {
      int stream = entry.stream == LogStream::kStderr ? stdcopy::kStderr : stdcopy::kStdout;
      return send_all(socket, client->tty ? entry.text : stdcopy::frame(stream, entry.text));
    });
  }
  if (!options.stream || container.state == ContainerState::kDead) {
    ::shutdown(socket, SHUT_RDWR);
    return;
  }
  auto rt = runtime(id);
  rt->io.add(client);
  publish(container, "attach");

  bool detached = false;
  if (options.stdin) {
    // As dockerd: detach keys act on a tty's input only; without one every byte is the process's.
    std::string keys = options.detach_keys.empty() ? std::string(kDefaultDetachKeys) : options.detach_keys;
    DetachKeyScanner scanner(container.config.tty ? keys : std::string());
    std::string pending = std::move(already_read);
    std::string buffer(16 * 1024, '\0');
    for (;;) {
      if (!pending.empty()) {
        std::string input;
        detached = scanner.feed(pending, input);
        pending.clear();
        if (!input.empty()) rt->io.write_stdin(input);
        if (detached) break;
      }
      ssize_t n = ::read(socket, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // The client's input ended (or the run did, which shut the socket down).
        if (container.config.stdin_once && !client->ended) rt->io.close_stdin();
        break;
      }
      pending.assign(buffer.data(), static_cast<size_t>(n));
    }
  }
  if (!detached) {
    rt->io.wait_ended(client, [&] { return stopping_.load() || client_gone(socket); });
  } else {
    log::info("client detached from container", {{"id", id}});
    publish(container, "detach");
  }
  rt->io.remove(client);
  ::shutdown(socket, SHUT_RDWR);
}

}  // namespace kiln::daemon::containers

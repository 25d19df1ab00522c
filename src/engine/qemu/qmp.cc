#include "engine/qemu/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/connect_retry.h"

namespace kiln::engine::qemu {
namespace {

constexpr size_t kMaxMessageBytes = 16 << 20;

int millis_until(std::chrono::steady_clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

Result<QmpClient> QmpClient::connect(const std::string& socket_path, int exit_fd,
                                     std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // QEMU creates the socket early in its start-up; wait for it, but stop at once if QEMU died.
  auto fd = connect_unix_socket_retrying(socket_path, {.timeout = timeout, .give_up_fd = exit_fd});
  if (!fd && fd.error().category() == ErrorCategory::kCancelled)
    return Error::unavailable("QEMU exited before its monitor socket was ready");
  if (!fd && fd.error().category() == ErrorCategory::kTimeout)
    return Error::timeout(fmt::format("QEMU monitor {} did not appear", socket_path));
  if (!fd) return fd.error();
  return handshake(std::move(*fd), std::chrono::milliseconds(millis_until(deadline)));
}

Result<QmpClient> QmpClient::handshake(UniqueFd fd, std::chrono::milliseconds timeout) {
  QmpClient client(std::move(fd));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Json greeting = KILN_TRY_CONTEXT(client.read_message(deadline), "QMP greeting");
  if (!greeting.contains("QMP")) {
    // Seen once under heavy CI load; the text says what came instead.
    return Error::protocol(fmt::format("QMP: unexpected greeting {}", greeting.dump().substr(0, 300)));
  }
  KILN_TRY(client.execute("qmp_capabilities", nullptr, timeout));
  return client;
}

Result<Json> QmpClient::execute(std::string_view command, const Json& arguments,
                                std::chrono::milliseconds timeout) {
  Json request = {{"execute", command}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  std::string line = request.dump() + "\n";
  KILN_TRY_CONTEXT(write_all(fd_.get(), line), fmt::format("QMP {}", command));
  return await_reply(command, std::chrono::steady_clock::now() + timeout);
}

Result<void> QmpClient::pass_fd(std::string_view name, int fd, std::chrono::milliseconds timeout) {
  std::string line = Json{{"execute", "getfd"}, {"arguments", {{"fdname", name}}}}.dump() + "\n";
  // The descriptor rides on the first byte of the command; QEMU's monitor keeps it for getfd.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{.iov_base = line.data(), .iov_len = 1};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  ssize_t sent;
  do {
    sent = ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != 1) return Error::last_os_error("QMP getfd: send descriptor");
  KILN_TRY_CONTEXT(write_all(fd_.get(), std::string_view(line).substr(1)), "QMP getfd");
  KILN_TRY(await_reply("getfd", std::chrono::steady_clock::now() + timeout));
  return ok();
}

Result<Json> QmpClient::await_reply(std::string_view command,
                                    std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    Json message = KILN_TRY_CONTEXT(read_message(deadline), fmt::format("QMP {}", command));
    if (message.contains("event")) {
      events_.push_back(std::move(message));
      continue;
    }
    if (message.contains("return")) return message["return"];
    if (message.contains("error")) {
      std::string description = message["error"].value("desc", "unknown error");
      return Error::protocol(fmt::format("QMP {}: {}", command, description));
    }
    return Error::protocol(fmt::format("QMP {}: unexpected reply {}", command, message.dump()));
  }
}

Result<Json> QmpClient::wait_for_event(std::string_view name,
                                       const std::function<bool(const Json& data)>& matches,
                                       std::chrono::steady_clock::time_point deadline) {
  auto is_it = [&](const Json& event) {
    if (event.value("event", "") != name) return false;
    return matches(event.contains("data") ? event["data"] : Json::object());
  };
  for (auto it = events_.begin(); it != events_.end(); ++it) {
    if (is_it(*it)) {
      Json found = std::move(*it);
      events_.erase(it);
      return found;
    }
  }
  for (;;) {
    Json message = KILN_TRY_CONTEXT(read_message(deadline), fmt::format("QMP: waiting for event {}", name));
    if (!message.contains("event")) continue;  // a late reply to a command that timed out
    if (is_it(message)) return message;
    events_.push_back(std::move(message));
  }
}

std::vector<Json> QmpClient::take_events() {
  return std::exchange(events_, {});
}

void QmpClient::collect_pending_events() {
  for (;;) {
    auto message = read_message(std::chrono::steady_clock::now());
    if (!message) return;  // nothing more now, or the connection is closed
    if (message->contains("event")) events_.push_back(std::move(*message));
  }
}

Result<Json> QmpClient::read_message(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      auto parsed = parse_json(line);
      if (!parsed || !parsed->is_object()) return Error::protocol("QMP: malformed message");
      return std::move(*parsed);
    }
    if (buffer_.size() > kMaxMessageBytes) return Error::protocol("QMP: message too large");
    pollfd pfd{fd_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, millis_until(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("poll");
    }
    if (ready == 0) return Error::timeout("QMP: no answer from QEMU");
    char chunk[8192];
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::last_os_error("QMP read");
    }
    if (n == 0) return Error::unavailable("QMP: QEMU closed the monitor connection");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace kiln::engine::qemu

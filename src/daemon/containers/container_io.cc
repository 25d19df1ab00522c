#include "daemon/containers/container_io.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/stdcopy.h"

namespace kiln::daemon::containers {
namespace {

constexpr size_t kMaxHeldInput = size_t{1} << 20;

}  // namespace

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

void ContainerIo::add(const std::shared_ptr<AttachedClient>& client) {
  std::lock_guard guard(mutex_);
  clients_.push_back(client);
}

void ContainerIo::remove(const std::shared_ptr<AttachedClient>& client) {
  std::lock_guard guard(mutex_);
  std::erase(clients_, client);
}

void ContainerIo::wait_ended(const std::shared_ptr<AttachedClient>& client,
                             const std::function<bool()>& give_up) {
  std::unique_lock lock(mutex_);
  while (!client->ended) {
    if (give_up && give_up()) return;
    changed_.wait_for(lock, std::chrono::milliseconds(200));
  }
}

void ContainerIo::broadcast(int stream, std::string_view payload) {
  std::vector<std::shared_ptr<AttachedClient>> clients;
  {
    std::lock_guard guard(mutex_);
    clients = clients_;
  }
  std::string framed;
  bool any_ended = false;
  for (const auto& client : clients) {
    if (client->ended) continue;
    if (stream == stdcopy::kStdout ? !client->want_stdout : !client->want_stderr) continue;
    std::string_view out = payload;
    if (!client->tty) {
      if (framed.empty()) framed = stdcopy::frame(stream, payload);
      out = framed;
    }
    // Outside the lock: a slow client holds up only this relay, never an attach or detach.
    if (!send_all(client->fd.get(), out)) {
      std::lock_guard guard(mutex_);
      client->ended = true;
      any_ended = true;
    }
  }
  if (any_ended) changed_.notify_all();
}

void ContainerIo::end_of_run() {
  std::lock_guard guard(mutex_);
  for (const auto& client : clients_) {
    // Queued output is still delivered before the FIN; the handler's blocked read returns at once.
    ::shutdown(client->fd.get(), SHUT_RDWR);
    client->ended = true;
  }
  clients_.clear();
  stdin_.reset();
  changed_.notify_all();
}

void ContainerIo::begin_run(std::shared_ptr<UniqueFd> stdin_socket, bool stdin_open) {
  std::lock_guard guard(mutex_);
  stdin_ = stdin_open ? std::move(stdin_socket) : nullptr;
  if (!stdin_) {
    held_input_.clear();
    return;
  }
  if (!held_input_.empty()) (void)send_all(stdin_->get(), held_input_);
  held_input_.clear();
  if (close_held_) ::shutdown(stdin_->get(), SHUT_WR);
  close_held_ = false;
}

void ContainerIo::write_stdin(std::string_view bytes) {
  std::shared_ptr<UniqueFd> target;
  {
    std::lock_guard guard(mutex_);
    if (!stdin_) {
      if (held_input_.size() + bytes.size() <= kMaxHeldInput) held_input_.append(bytes);
      return;
    }
    target = stdin_;
  }
  // A process that does not read its stdin blocks this writer, not the container's output.
  (void)send_all(target->get(), bytes);
}

void ContainerIo::close_stdin() {
  std::lock_guard guard(mutex_);
  if (stdin_) {
    ::shutdown(stdin_->get(), SHUT_WR);
  } else {
    close_held_ = true;
  }
}

Result<std::string> parse_detach_keys(std::string_view keys) {
  std::string sequence;
  auto invalid = [&](std::string_view key) {
    return Error::invalid_argument(
        fmt::format("Invalid detach keys ({}) provided: Unknown character: '{}'", keys, key));
  };
  size_t start = 0;
  while (start <= keys.size()) {
    size_t end = keys.find(',', start);
    if (end == std::string_view::npos) end = keys.size();
    std::string_view key = keys.substr(start, end - start);
    if (key.size() == 1) {
      sequence.push_back(key[0]);
    } else if (key.size() == 6 && key.substr(0, 5) == "ctrl-") {
      char c = static_cast<char>(std::tolower(static_cast<unsigned char>(key[5])));
      if (c >= 'a' && c <= 'z') {
        sequence.push_back(static_cast<char>(c - 'a' + 1));
      } else if (c == '@' || c == '[' || c == '\\' || c == ']' || c == '^' || c == '_') {
        sequence.push_back(static_cast<char>(key[5] - '@'));
      } else {
        return invalid(key);
      }
    } else {
      return invalid(key);
    }
    start = end + 1;
  }
  return sequence;
}

bool DetachKeyScanner::feed(std::string_view input, std::string& out) {
  if (sequence_.empty()) {
    out.append(input);
    return false;
  }
  for (char c : input) {
    if (c == sequence_[matched_]) {
      if (++matched_ == sequence_.size()) return true;
      continue;
    }
    // A broken partial match: what was held back was input after all.
    out.append(sequence_, 0, matched_);
    matched_ = 0;
    if (c == sequence_[0]) {
      matched_ = 1;
      if (sequence_.size() == 1) return true;
    } else {
      out.push_back(c);
    }
  }
  return false;
}

}  // namespace kiln::daemon::containers

#include "api/http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "api/http/connection.h"
#include "common/errno_text.h"
#include "common/log.h"

namespace kiln::api::http {
namespace {

std::string describe_peer(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    return fmt::format("tcp://{}:{}", text, ntohs(v4.sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    return fmt::format("tcp://[{}]:{}", text, ntohs(v6.sin6_port));
  }
  return "unix";
}

// Over the connection cap there is no thread to spare: answer from the accept thread without blocking.
// Best effort (the client may not have sent its request yet); what matters is that we do not queue it.
void refuse_busy(const Router& router, int fd) {
  char sink[4096];
  while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
  std::string bytes =
      detail::render_response(router.error(Error::unavailable("too many connections")), false);
  (void)::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)::shutdown(fd, SHUT_WR);
}

}  // namespace

Result<std::unique_ptr<Server>> Server::create(Router router, ServerOptions options) {
  UniqueFd stop_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd) return Error::last_os_error("eventfd");
  return std::unique_ptr<Server>(new Server(std::move(router), options, std::move(stop_fd)));
}

Server::~Server() {
  stop();
}

Result<Endpoint> Server::listen(std::string_view endpoint) {
  return listen(KILN_TRY(parse_endpoint(endpoint)));
}

Result<Endpoint> Server::listen(const Endpoint& endpoint) {
  Listener listener = KILN_TRY(Listener::bind(endpoint));
  Endpoint bound = listener.endpoint();
  std::lock_guard lock(mutex_);
  if (stopping_) return Error::cancelled("server is stopping");
  int fd = listener.fd();
  try {
    accept_threads_.emplace_back([this, fd] { accept_loop(fd); });
  } catch (const std::system_error& e) {
    return Error::from_errno("start listener thread", e.code().value());
  }
  listeners_.push_back(std::move(listener));
  log::info("api listening", {{"endpoint", bound.to_string()}});
  return bound;
}

void Server::accept_loop(int listen_fd) {
  for (;;) {
    pollfd fds[2] = {{.fd = listen_fd, .events = POLLIN}, {.fd = stop_fd_.get(), .events = POLLIN}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::error("poll on listener failed; listener stops", {{"error", errno_text(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      // Out of fds or memory: back off instead of spinning; existing connections finishing will free some.
      log::warn("accept failed", {{"error", errno_text(errno)}});
      ::poll(&fds[1], 1, 100);
      continue;
    }
    start_connection(UniqueFd(fd), describe_peer(address));
  }
}

void Server::start_connection(UniqueFd fd, std::string peer) {
  std::unique_lock lock(mutex_);
  reap_finished_locked();
  if (stopping_) return;
  if (connections_.size() >= options_.max_connections) {
    lock.unlock();
    log::warn("connection refused: too many connections",
              {{"peer", peer}, {"limit", options_.max_connections}});
    refuse_busy(router_, fd.get());
    return;
  }
  uint64_t id = next_id_++;
  int raw_fd = fd.get();
  Connection& connection = connections_[id];
  connection.fd = std::move(fd);
  try {
    connection.thread =
        std::thread([this, id, raw_fd, peer = std::move(peer)] { run_connection(id, raw_fd, peer); });
  } catch (const std::system_error& e) {
    log::warn("cannot start connection thread", {{"error", e.what()}});
    connections_.erase(id);
  }
}

void Server::run_connection(uint64_t id, int fd, std::string peer) {
  detail::serve_connection(
      {.fd = fd, .stop_fd = stop_fd_.get(), .router = router_, .options = options_, .peer = std::move(peer)});
  std::lock_guard lock(mutex_);
  Connection& connection = connections_.at(id);
  connection.fd.reset();  // under the lock: stop() never shuts down a number that was reused
  connection.done = true;
}

void Server::reap_finished_locked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (!it->second.done) {
      ++it;
      continue;
    }
    it->second.thread.join();  // already past its last statement
    it = connections_.erase(it);
  }
}

size_t Server::connection_count() const {
  std::lock_guard lock(mutex_);
  size_t live = 0;
  for (const auto& [id, connection] : connections_) live += connection.done ? 0 : 1;
  return live;
}

void Server::stop() {
  std::lock_guard stop_lock(stop_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && accept_threads_.empty() && connections_.empty()) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)::write(stop_fd_.get(), &one, sizeof one);

  // No lock needed: after stopping_ is set nobody else touches accept_threads_ or adds listeners.
  for (std::thread& thread : accept_threads_) thread.join();
  accept_threads_.clear();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    listeners_.clear();
    for (auto& [id, connection] : connections_) {
      // Wakes handlers blocked on a hijacked socket or a stream; the fd stays open until its thread ends.
      if (connection.fd) (void)::shutdown(connection.fd.get(), SHUT_RDWR);
      threads.push_back(std::move(connection.thread));
    }
  }
  for (std::thread& thread : threads) thread.join();
  std::lock_guard lock(mutex_);
  connections_.clear();
}

}  // namespace kiln::api::http

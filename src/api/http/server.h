// Server: Kiln's HTTP/1.1 server. One Server serves one Router on any number of listeners (unix and tcp),
// with a thread per connection and blocking handlers (a VM boot or a log stream may take a while).
// The Server owns its listener and connection threads; listen() and stop() may be called from any thread,
// handlers run on connection threads. See README.md for the three reply modes and the limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "api/http/endpoint.h"
#include "api/http/listener.h"
#include "api/http/router.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::api::http {

struct ServerOptions {
  size_t max_connections = 512;       // beyond this, new connections get 503 and are closed
  uint32_t header_limit = 64 * 1024;  // request line + headers; more -> 431
  uint64_t body_limit = 16 << 20;     // request body; more -> 413
  // From the moment the server waits for a request until its header is complete: slowloris defence and the
  // keep-alive idle limit in one.
  std::chrono::milliseconds header_timeout{30'000};
  // For reading a body and for each write of a response or chunk: a client that stops reading is dropped.
  std::chrono::milliseconds io_timeout{120'000};
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> create(Router router, ServerOptions options = {});
  ~Server();  // stop()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds `endpoint` and starts accepting on it. Returns the bound endpoint: for "tcp://...:0" it carries
  // the port the kernel chose. kAlreadyExists when a live server owns the unix socket.
  Result<Endpoint> listen(const Endpoint& endpoint);
  Result<Endpoint> listen(std::string_view endpoint);

  // Closes the listeners, shuts down every connection still tracked (idle, mid-request, streaming, or
  // hijacked with the handler still running) and joins all threads. Blocks until handlers return: a
  // handler that waits on something else than its socket must poll its socket too. Idempotent.
  void stop();

  // Connections being served right now (for tests and metrics).
  size_t connection_count() const;

 private:
  struct Connection {
    UniqueFd fd;  // closed by the connection's own thread when it is done; the number is never reused early
    std::thread thread;
    bool done = false;
  };

  Server(Router router, ServerOptions options, UniqueFd stop_fd)
      : router_(std::move(router)), options_(options), stop_fd_(std::move(stop_fd)) {}

  void accept_loop(int listen_fd);
  void start_connection(UniqueFd fd, std::string peer);
  void run_connection(uint64_t id, int fd, std::string peer);
  void reap_finished_locked();

  const Router router_;
  const ServerOptions options_;
  UniqueFd stop_fd_;  // eventfd, readable once stop() began: wakes every poll in the server

  std::mutex stop_mutex_;  // serializes stop() (an explicit call and the destructor's)
  mutable std::mutex mutex_;
  std::vector<Listener> listeners_;
  std::vector<std::thread> accept_threads_;
  std::map<uint64_t, Connection> connections_;
  uint64_t next_id_ = 0;
  bool stopping_ = false;
};

}  // namespace kiln::api::http

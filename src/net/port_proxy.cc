#include "net/port_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <tuple>
#include <unordered_map>

#include "common/errno_text.h"
#include "common/log.h"
#include "net/event_loop.h"
#include "net/socket_address.h"

namespace kiln::net {

namespace {

using Clock = std::chrono::steady_clock;

// dockerd's text when its userland proxy cannot listen (Go's net error inside): "Error starting userland
// proxy: listen tcp4 0.0.0.0:8080: bind: address already in use".
std::string go_listen_error(const std::string& protocol, SocketAddress address, uint16_t port,
                            std::string_view call, int errnum) {
  address.set_port(port);
  std::string text = errno_text(errnum);
  // Go's errno strings are strerror's, lowercased at the start.
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return fmt::format("Error starting userland proxy: listen {}{} {}: {}: {}", protocol,
                     address.family() == AF_INET ? "4" : "6", address.to_string(), call, text);
}

// A fixed-size byte queue for one direction of a TCP relay: its capacity is the backpressure bound.
class RelayBuffer {
 public:
  explicit RelayBuffer(size_t capacity) : data_(new char[capacity]), capacity_(capacity) {}
  bool empty() const { return begin_ == end_; }
  bool full() const { return end_ - begin_ == capacity_; }
  // Reads what fits from `fd`: bytes read, 0 at EOF, -1 with errno.
  ssize_t fill_from(int fd) {
    if (begin_ > 0) {
      std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    ssize_t n = ::recv(fd, data_.get() + end_, capacity_ - end_, 0);
    if (n > 0) end_ += static_cast<size_t>(n);
    return n;
  }
  ssize_t drain_to(int fd) {
    ssize_t n = ::send(fd, data_.get() + begin_, end_ - begin_, MSG_NOSIGNAL);
    if (n > 0) begin_ += static_cast<size_t>(n);
    if (begin_ == end_) begin_ = end_ = 0;
    return n;
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

// dockerd's portallocator: the kernel's ip_local_port_range, else 49153-60999.
std::pair<uint16_t, uint16_t> ephemeral_range(const PortProxyOptions& options) {
  if (options.ephemeral_first != 0 && options.ephemeral_last >= options.ephemeral_first)
    return {options.ephemeral_first, options.ephemeral_last};
  std::pair<uint16_t, uint16_t> fallback{49153, 60999};
  auto text = read_file("/proc/sys/net/ipv4/ip_local_port_range", 4096);
  if (!text) return fallback;
  unsigned first = 0, last = 0;
  if (std::sscanf(text->c_str(), "%u %u", &first, &last) != 2 || first == 0 || last > 65535 || last < first)
    return fallback;
  return {static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

bool transient(int errnum) {
  return errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINTR;
}

}  // namespace

namespace detail {

class Forward {
 public:
  virtual ~Forward() = default;
  virtual size_t active() const = 0;
  virtual void tick(Clock::time_point /*now*/) {}
};

// One proxied TCP connection: client <-> target, each direction through its own RelayBuffer. EOF from one
// side becomes shutdown(SHUT_WR) on the other once that direction's buffer is flushed; the connection ends
// when both directions are shut, or at the first error.
class TcpConnection {
 public:
  TcpConnection(EventLoop& loop, UniqueFd client, UniqueFd target, size_t buffer_bytes)
      : loop_(loop),
        client_(std::move(client)),
        target_(std::move(target)),
        to_target_(buffer_bytes),
        to_client_(buffer_bytes) {}
  ~TcpConnection() {
    loop_.unwatch(client_token_);
    loop_.unwatch(target_token_);
  }

  // Registers both fds; `on_event(is_client, events)` is called for each readiness.
  Result<void> start(const std::function<void(bool, uint32_t)>& on_event) {
    client_handler_ = [on_event](uint32_t e) { on_event(true, e); };
    target_handler_ = [on_event](uint32_t e) { on_event(false, e); };
    return update_interest() ? ok() : Result<void>(Error::internal("connection ended at start"));
  }

  // False: the connection is over (the caller deletes it).
  bool handle(bool is_client, uint32_t events) {
    if (events & EPOLLERR) return false;
    if (!is_client && connecting_) {
      int error = 0;
      socklen_t length = sizeof error;
      if (::getsockopt(target_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) return false;
      if (!(events & EPOLLOUT)) return !(events & EPOLLHUP);
      connecting_ = false;
      return update_interest();
    }
    if (events & EPOLLHUP) (is_client ? client_hup_ : target_hup_) = true;
    int fd = is_client ? client_.get() : target_.get();
    RelayBuffer& inbound = is_client ? to_target_ : to_client_;   // what this fd gives
    RelayBuffer& outbound = is_client ? to_client_ : to_target_;  // what this fd takes
    bool& eof = is_client ? client_eof_ : target_eof_;
    if ((events & EPOLLOUT) && !outbound.empty()) {
      if (outbound.drain_to(fd) < 0 && !transient(errno)) return false;
    }
    if ((events & (EPOLLIN | EPOLLHUP)) && !eof && !inbound.full()) {
      ssize_t n = inbound.fill_from(fd);
      if (n == 0) eof = true;
      if (n < 0 && !transient(errno)) return false;
    }
    return update_interest();
  }

 private:
  // Propagates half-closes and sets what each side waits for; false when both directions are done.
  bool update_interest() {
    if (!connecting_) {
      if (client_eof_ && to_target_.empty() && !target_shut_) {
        (void)::shutdown(target_.get(), SHUT_WR);
        target_shut_ = true;
      }
      if (target_eof_ && to_client_.empty() && !client_shut_) {
        (void)::shutdown(client_.get(), SHUT_WR);
        client_shut_ = true;
      }
      if (target_shut_ && client_shut_) return false;
    }
    uint32_t client_events = 0;
    if (!client_eof_ && !to_target_.full()) client_events |= EPOLLIN;
    if (!to_client_.empty()) client_events |= EPOLLOUT;
    uint32_t target_events = 0;
    if (connecting_) {
      target_events = EPOLLOUT;
    } else {
      if (!target_eof_ && !to_client_.full()) target_events |= EPOLLIN;
      if (!to_target_.empty()) target_events |= EPOLLOUT;
    }
    return set_interest(client_.get(), client_handler_, client_hup_, client_events, &client_token_) &&
           set_interest(target_.get(), target_handler_, target_hup_, target_events, &target_token_);
  }

  // A peer that closed both ways makes epoll report EPOLLHUP whatever the interest: while nothing is wanted
  // from its fd (its last bytes wait for room in a full buffer), the fd leaves the epoll set instead of
  // waking the loop without end, and comes back once something is wanted again.
  bool set_interest(int fd, const EventLoop::Handler& handler, bool hup, uint32_t events,
                    EventLoop::Token* token) {
    if (hup && events == 0) {
      loop_.unwatch(*token);
      *token = 0;
      return true;
    }
    if (*token == 0) {
      auto watched = loop_.watch(fd, events, handler);
      if (!watched) return false;
      *token = *watched;
      return true;
    }
    loop_.modify(*token, events);
    return true;
  }

  EventLoop& loop_;
  UniqueFd client_;
  UniqueFd target_;
  EventLoop::Handler client_handler_;
  EventLoop::Handler target_handler_;
  EventLoop::Token client_token_ = 0;  // 0: not in the epoll set
  EventLoop::Token target_token_ = 0;
  bool client_hup_ = false;
  bool target_hup_ = false;
  RelayBuffer to_target_;
  RelayBuffer to_client_;
  bool connecting_ = true;
  bool client_eof_ = false;
  bool target_eof_ = false;
  bool client_shut_ = false;  // we sent FIN to the client
  bool target_shut_ = false;  // we sent FIN to the target
};

class TcpForward : public Forward {
 public:
  TcpForward(EventLoop& loop, const SocketFactory& factory, const PortProxyOptions& options,
             UniqueFd listener, SocketAddress target)
      : loop_(loop), factory_(factory), options_(options), listener_(std::move(listener)), target_(target) {}
  ~TcpForward() override {
    connections_.clear();
    loop_.unwatch(listener_token_);
  }

  Result<void> start() {
    listener_token_ = KILN_TRY(loop_.watch(listener_.get(), EPOLLIN, [this](uint32_t) { accept_some(); }));
    return ok();
  }
  size_t active() const override { return connections_.size(); }
  void tick(Clock::time_point) override {
    if (paused_) {
      paused_ = false;
      loop_.modify(listener_token_, EPOLLIN);
    }
  }

 private:
  void accept_some() {
    for (int i = 0; i < 32; ++i) {
      UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!client) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: stop accepting until the next tick rather than spin on the pending one.
          log::warn("port proxy: accept failed", {{"error", errno_text(errno)}});
          paused_ = true;
          loop_.modify(listener_token_, 0);
        }
        return;
      }
      connect_to_target(std::move(client));
    }
  }

  void connect_to_target(UniqueFd client) {
    auto target = factory_(target_.family(), SOCK_STREAM);
    if (!target) {
      log::warn("port proxy: cannot make a socket toward the guest", {{"error", target.error().message()}});
      return;  // closes the client
    }
    if (!set_nonblocking(target->get())) return;
    if (::connect(target->get(), target_.get(), target_.length) != 0 && errno != EINPROGRESS) return;
    uint64_t id = next_id_++;
    auto connection =
        std::make_unique<TcpConnection>(loop_, std::move(client), std::move(*target), options_.buffer_bytes);
    TcpConnection* raw = connection.get();
    connections_.emplace(id, std::move(connection));
    auto started = raw->start([this, id](bool is_client, uint32_t events) {
      auto it = connections_.find(id);
      if (it != connections_.end() && !it->second->handle(is_client, events)) connections_.erase(it);
    });
    if (!started) connections_.erase(id);
  }

  EventLoop& loop_;
  const SocketFactory& factory_;
  const PortProxyOptions& options_;
  UniqueFd listener_;
  SocketAddress target_;
  EventLoop::Token listener_token_ = 0;
  bool paused_ = false;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<TcpConnection>> connections_;
};

// UDP: one flow per client address, each with its own socket connected to the target; the target's
// replies go back to that client from the listening socket. Idle flows expire.
class UdpForward : public Forward {
 public:
  UdpForward(EventLoop& loop, const SocketFactory& factory, const PortProxyOptions& options,
             UniqueFd listener, SocketAddress target)
      : loop_(loop), factory_(factory), options_(options), listener_(std::move(listener)), target_(target) {}
  ~UdpForward() override {
    for (auto& [key, flow] : flows_) loop_.unwatch(flow->token);
    loop_.unwatch(listener_token_);
  }

  Result<void> start() {
    listener_token_ = KILN_TRY(loop_.watch(listener_.get(), EPOLLIN, [this](uint32_t) { from_clients(); }));
    return ok();
  }
  size_t active() const override { return flows_.size(); }
  void tick(Clock::time_point now) override {
    for (auto it = flows_.begin(); it != flows_.end();) {
      if (now - it->second->last_used >= options_.udp_idle_timeout) {
        loop_.unwatch(it->second->token);
        it = flows_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  struct Flow {
    UniqueFd socket;
    SocketAddress client;
    EventLoop::Token token = 0;
    Clock::time_point last_used;
  };

  static std::string key_of(const SocketAddress& address) {
    return std::string(reinterpret_cast<const char*>(&address.storage), address.length);
  }

  void from_clients() {
    for (int i = 0; i < 64; ++i) {
      SocketAddress client;
      client.length = sizeof client.storage;
      ssize_t n = ::recvfrom(listener_.get(), datagram_, sizeof datagram_, 0,
                             reinterpret_cast<sockaddr*>(&client.storage), &client.length);
      if (n < 0) return;  // EAGAIN, or an ICMP error queued on the socket: nothing to relay
      Flow* flow = flow_for(client);
      if (!flow) continue;
      flow->last_used = Clock::now();
      // A full socket buffer drops the datagram, as the network would.
      (void)::send(flow->socket.get(), datagram_, static_cast<size_t>(n), MSG_NOSIGNAL);
    }
  }

  Flow* flow_for(const SocketAddress& client) {
    std::string key = key_of(client);
    if (auto it = flows_.find(key); it != flows_.end()) return it->second.get();
    if (flows_.size() >= options_.max_udp_flows) return nullptr;
    auto socket = factory_(target_.family(), SOCK_DGRAM);
    if (!socket) {
      log::warn("port proxy: cannot make a socket toward the guest", {{"error", socket.error().message()}});
      return nullptr;
    }
    if (!set_nonblocking(socket->get())) return nullptr;
    if (::connect(socket->get(), target_.get(), target_.length) != 0) return nullptr;
    auto flow = std::make_unique<Flow>(Flow{std::move(*socket), client});
    auto token = loop_.watch(flow->socket.get(), EPOLLIN, [this, key](uint32_t) { from_target(key); });
    if (!token) return nullptr;
    flow->token = *token;
    return flows_.emplace(key, std::move(flow)).first->second.get();
  }

  void from_target(const std::string& key) {
    auto it = flows_.find(key);
    if (it == flows_.end()) return;
    Flow& flow = *it->second;
    for (int i = 0; i < 64; ++i) {
      ssize_t n = ::recv(flow.socket.get(), datagram_, sizeof datagram_, 0);
      if (n < 0) {
        if (transient(errno) || errno == ECONNREFUSED) return;  // refused: the guest has no listener yet
        loop_.unwatch(flow.token);
        flows_.erase(it);
        return;
      }
      flow.last_used = Clock::now();
      (void)::sendto(listener_.get(), datagram_, static_cast<size_t>(n), MSG_NOSIGNAL, flow.client.get(),
                     flow.client.length);
    }
  }

  EventLoop& loop_;
  const SocketFactory& factory_;
  const PortProxyOptions& options_;
  UniqueFd listener_;
  SocketAddress target_;
  EventLoop::Token listener_token_ = 0;
  std::unordered_map<std::string, std::unique_ptr<Flow>> flows_;
  char datagram_[65536];
};

// Shared by the PortProxy and its listeners; all forwards live on the loop thread.
class ProxyCore {
 public:
  ProxyCore(SocketFactory factory, PortProxyOptions options, std::unique_ptr<EventLoop> loop)
      : factory_(std::move(factory)),
        options_(options),
        loop_(std::move(loop)),
        ephemeral_first_(ephemeral_range(options).first),
        ephemeral_last_(ephemeral_range(options).second) {
    auto interval = std::clamp(options_.udp_idle_timeout / 4, std::chrono::milliseconds(10),
                               std::chrono::milliseconds(1000));
    loop_->run_sync([&] { loop_->set_tick(interval, [this] { tick(); }); });
  }
  ~ProxyCore() {
    loop_->run_sync([this] { forwards_.clear(); });
    loop_.reset();
  }

  Result<std::pair<uint64_t, uint16_t>> listen(const ProxySpec& spec) {
    bool tcp = spec.protocol == "tcp";
    if (!tcp && spec.protocol != "udp")
      return Error::invalid_argument(fmt::format("unsupported protocol {:?}", spec.protocol));
    SocketAddress host = KILN_TRY(parse_ip(spec.host_ip.empty() ? "0.0.0.0" : spec.host_ip, 0));
    SocketAddress target = KILN_TRY(parse_ip(spec.target_ip, spec.target_port));
    UniqueFd listener(
        ::socket(host.family(), (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener) return Error::last_os_error("socket");
    int one = 1;
    // As Go's listeners: SO_REUSEADDR on TCP (a restarted forward does not wait out TIME_WAIT), and an IPv6
    // address means IPv6 only.
    if (tcp) (void)::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (host.family() == AF_INET6)
      (void)::setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (spec.host_port != 0 && spec.host_port_last <= spec.host_port) {
      std::lock_guard lock(cursor_mutex_);
      if (held_.count({spec.protocol, host.ip(), spec.host_port}))
        // dockerd's allocator's text: the same address and port is already one of its own forwards.
        return Error(ErrorCategory::kIo, fmt::format("Bind for {}:{} failed: port is already allocated",
                                                     host.ip(), spec.host_port));
    }
    uint16_t port = KILN_TRY(bind_port(listener.get(), host, spec));
    if (tcp && ::listen(listener.get(), SOMAXCONN) != 0)
      return Error(ErrorCategory::kIo, go_listen_error(spec.protocol, host, port, "listen", errno));

    Result<uint64_t> id = Error::internal("not registered");
    loop_->run_sync([&] {
      std::unique_ptr<Forward> forward;
      Result<void> started;
      if (tcp) {
        auto tcp_forward =
            std::make_unique<TcpForward>(*loop_, factory_, options_, std::move(listener), target);
        started = tcp_forward->start();
        forward = std::move(tcp_forward);
      } else {
        auto udp_forward =
            std::make_unique<UdpForward>(*loop_, factory_, options_, std::move(listener), target);
        started = udp_forward->start();
        forward = std::move(udp_forward);
      }
      if (!started) {
        id = started.error();
        return;
      }
      uint64_t new_id = next_id_++;
      forwards_.emplace(new_id, std::move(forward));
      id = new_id;
    });
    uint64_t new_id = KILN_TRY(std::move(id));
    std::lock_guard lock(cursor_mutex_);
    held_by_id_[new_id] = {spec.protocol, host.ip(), port};
    held_.insert({spec.protocol, host.ip(), port});
    return std::pair{new_id, port};
  }

  void remove(uint64_t id) {
    loop_->run_sync([&] { forwards_.erase(id); });
    std::lock_guard lock(cursor_mutex_);
    if (auto it = held_by_id_.find(id); it != held_by_id_.end()) {
      held_.erase(it->second);
      held_by_id_.erase(it);
    }
  }

  size_t active(uint64_t id) {
    size_t count = 0;
    loop_->run_sync([&] {
      if (auto it = forwards_.find(id); it != forwards_.end()) count = it->second->active();
    });
    return count;
  }

 private:
  // Binds `spec.host_port` (or the first free port up to host_port_last), or with 0 the next free port of
  // the ephemeral range after the last one given (dockerd's allocator walks its range the same way rather
  // than reusing the lowest port).
  Result<uint16_t> bind_port(int fd, SocketAddress host, const ProxySpec& spec) {
    if (spec.host_port != 0) {
      uint16_t last = std::max(spec.host_port, spec.host_port_last);
      for (uint32_t port = spec.host_port;; ++port) {
        host.set_port(static_cast<uint16_t>(port));
        if (::bind(fd, host.get(), host.length) == 0) return static_cast<uint16_t>(port);
        if (errno != EADDRINUSE || port == last)
          return Error(ErrorCategory::kIo,
                       go_listen_error(spec.protocol, host, static_cast<uint16_t>(port), "bind", errno));
      }
    }
    std::lock_guard lock(cursor_mutex_);
    uint16_t& cursor = spec.protocol == "tcp" ? tcp_cursor_ : udp_cursor_;
    uint32_t first = ephemeral_first_;
    uint32_t span = ephemeral_last_ - ephemeral_first_ + 1u;
    for (uint32_t i = 0; i < span; ++i) {
      auto port = static_cast<uint16_t>(first + (cursor - first + i) % span);
      host.set_port(port);
      if (::bind(fd, host.get(), host.length) == 0) {
        cursor = static_cast<uint16_t>(first + (port - first + 1u) % span);
        return port;
      }
      if (errno != EADDRINUSE)
        return Error(ErrorCategory::kIo, go_listen_error(spec.protocol, host, port, "bind", errno));
    }
    // dockerd's allocator's text when its range is exhausted.
    return Error(ErrorCategory::kIo, "all ports are allocated");
  }

  void tick() {
    auto now = Clock::now();
    for (auto& [id, forward] : forwards_) forward->tick(now);
  }

  SocketFactory factory_;
  PortProxyOptions options_;
  std::unique_ptr<EventLoop> loop_;
  uint16_t ephemeral_first_;
  uint16_t ephemeral_last_;
  std::mutex cursor_mutex_;  // guards the cursors and what is held
  // (protocol, ip, port) of every live listener, to answer a second claim with dockerd's own text.
  using Held = std::tuple<std::string, std::string, uint16_t>;
  std::set<Held> held_;
  std::unordered_map<uint64_t, Held> held_by_id_;
  uint16_t tcp_cursor_ = ephemeral_first_;
  uint16_t udp_cursor_ = ephemeral_first_;
  // Loop thread only:
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Forward>> forwards_;
};

}  // namespace detail

ProxyListener::ProxyListener(std::shared_ptr<detail::ProxyCore> core, uint64_t id, uint16_t port)
    : core_(std::move(core)), id_(id), port_(port) {}

ProxyListener::~ProxyListener() {
  core_->remove(id_);
}

size_t ProxyListener::active() const {
  return core_->active(id_);
}

PortProxy::PortProxy(SocketFactory factory, PortProxyOptions options) {
  auto loop = EventLoop::create();
  if (!loop) {
    log::error("port proxy: cannot start its event loop", {{"error", loop.error().message()}});
    std::abort();
  }
  core_ = std::make_shared<detail::ProxyCore>(std::move(factory), options, std::move(*loop));
}

PortProxy::~PortProxy() = default;

Result<std::unique_ptr<ProxyListener>> PortProxy::listen(const ProxySpec& spec) {
  auto [id, port] = KILN_TRY(core_->listen(spec));
  return std::unique_ptr<ProxyListener>(new ProxyListener(core_, id, port));
}

}  // namespace kiln::net

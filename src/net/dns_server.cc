#include "net/dns_server.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <unordered_map>

#include "common/errno_text.h"
#include "common/log.h"
#include "net/dns_message.h"
#include "net/event_loop.h"
#include "net/socket_address.h"

namespace kiln::net {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kTtl = 600;  // Docker's respTTL for the names it owns

bool transient(int errnum) {
  return errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINTR;
}

std::string framed(std::string_view message) {
  std::string out;
  out.push_back(static_cast<char>(message.size() >> 8));
  out.push_back(static_cast<char>(message.size() & 0xFF));
  out.append(message);
  return out;
}

// One forwarded query: tried on each upstream in turn (UDP, or TCP when the client asked over TCP or a UDP
// reply came back truncated), each attempt with a deadline. Loop thread only.
class Exchange {
 public:
  Exchange(EventLoop& loop, const std::vector<SocketAddress>& upstreams, const DnsServerOptions& options,
           std::string query, bool tcp, EventLoop::Handler handler)
      : loop_(loop),
        upstreams_(upstreams),
        options_(options),
        query_(std::move(query)),
        tcp_(tcp),
        handler_(std::move(handler)) {}
  ~Exchange() { loop_.unwatch(token_); }

  // Starts the first attempt; false if none could start (finished with no reply).
  void start() { next_upstream(); }
  bool finished() const { return finished_; }
  // The upstream's reply, or "" when every upstream failed.
  const std::string& reply() const { return reply_; }
  // A truncated UDP reply seen on the way (for a UDP client whose size the full reply exceeds).
  const std::string& truncated_reply() const { return truncated_reply_; }

  void on_event(uint32_t events) {
    if (connecting_) {
      int error = 0;
      socklen_t length = sizeof error;
      if (::getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0 ||
          (events & EPOLLERR))
        return next_upstream();
      if (!(events & EPOLLOUT)) return;
      connecting_ = false;
    }
    if (tcp_) return on_tcp_event(events);
    char buffer[dns::kMaxMessage];
    ssize_t n = ::recv(socket_.get(), buffer, sizeof buffer, 0);
    if (n < 0) {
      if (!transient(errno)) next_upstream();  // ECONNREFUSED: nothing listens there
      return;
    }
    std::string_view reply(buffer, static_cast<size_t>(n));
    if (dns::message_id(reply) != dns::message_id(query_)) return;  // not the answer to this query
    if (dns::truncated(reply)) {
      truncated_reply_ = std::string(reply);
      tcp_ = true;
      --next_;  // same upstream, over TCP
      return next_upstream();
    }
    finish(std::string(reply));
  }

  void tick(Clock::time_point now) {
    if (!finished_ && now >= deadline_) next_upstream();
  }

 private:
  void on_tcp_event(uint32_t events) {
    if ((events & EPOLLERR)) return next_upstream();
    if (sent_ < outbound_.size()) {
      ssize_t n = ::send(socket_.get(), outbound_.data() + sent_, outbound_.size() - sent_, MSG_NOSIGNAL);
      if (n < 0) {
        if (!transient(errno)) next_upstream();
        return;
      }
      sent_ += static_cast<size_t>(n);
      loop_.modify(token_, sent_ < outbound_.size() ? EPOLLOUT : EPOLLIN);
      return;
    }
    char buffer[16384];
    ssize_t n = ::recv(socket_.get(), buffer, sizeof buffer, 0);
    if (n == 0) return next_upstream();
    if (n < 0) {
      if (!transient(errno)) next_upstream();
      return;
    }
    inbound_.append(buffer, static_cast<size_t>(n));
    if (inbound_.size() < 2) return;
    size_t length = (static_cast<uint8_t>(inbound_[0]) << 8) | static_cast<uint8_t>(inbound_[1]);
    if (inbound_.size() < 2 + length) return;
    std::string reply = inbound_.substr(2, length);
    if (dns::message_id(reply) != dns::message_id(query_)) return next_upstream();
    finish(std::move(reply));
  }

  void next_upstream() {
    close_attempt();
    while (next_ < upstreams_.size()) {
      if (open(upstreams_[next_++])) return;
    }
    finish("");
  }

  bool open(const SocketAddress& upstream) {
    socket_.reset(
        ::socket(upstream.family(), (tcp_ ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket_) return false;
    int rc = ::connect(socket_.get(), upstream.get(), upstream.length);
    if (rc != 0 && !(tcp_ && errno == EINPROGRESS)) return false;
    deadline_ = Clock::now() + options_.upstream_timeout;
    if (tcp_) {
      connecting_ = rc != 0;
      outbound_ = framed(query_);
      sent_ = 0;
      inbound_.clear();
    } else if (::send(socket_.get(), query_.data(), query_.size(), MSG_NOSIGNAL) < 0) {
      return false;
    }
    auto token = loop_.watch(socket_.get(), tcp_ ? EPOLLOUT : EPOLLIN, handler_);
    if (!token) return false;
    token_ = *token;
    return true;
  }

  void close_attempt() {
    loop_.unwatch(token_);
    token_ = 0;
    socket_.reset();
    connecting_ = false;
  }

  void finish(std::string reply) {
    close_attempt();
    reply_ = std::move(reply);
    finished_ = true;
  }

  EventLoop& loop_;
  const std::vector<SocketAddress>& upstreams_;
  const DnsServerOptions& options_;
  std::string query_;
  bool tcp_;
  EventLoop::Handler handler_;
  size_t next_ = 0;
  UniqueFd socket_;
  EventLoop::Token token_ = 0;
  bool connecting_ = false;
  std::string outbound_;
  size_t sent_ = 0;
  std::string inbound_;
  Clock::time_point deadline_;
  bool finished_ = false;
  std::string reply_;
  std::string truncated_reply_;
};

// A DNS-over-TCP client (RFC 1035 §4.2.2, RFC 7766): length-prefixed queries in, replies out, in any order.
struct TcpClient {
  UniqueFd fd;
  EventLoop::Token token = 0;
  std::string inbound;
  std::string outbound;
  size_t in_flight = 0;
  bool eof = false;
  Clock::time_point last_active;
  std::string peer_ip;  // whose names it may ask for (NameLookup::forward)
};

constexpr size_t kMaxTcpOutbound = 256 * 1024;

}  // namespace

namespace detail {

// One network's server. Loop thread only.
class Zone {
 public:
  Zone(EventLoop& loop, const std::vector<SocketAddress>& upstreams, const DnsServerOptions& options,
       UniqueFd udp, UniqueFd tcp, NameLookup lookup)
      : loop_(loop),
        upstreams_(upstreams),
        options_(options),
        udp_(std::move(udp)),
        tcp_(std::move(tcp)),
        lookup_(std::move(lookup)) {}
  ~Zone() {
    exchanges_.clear();
    for (auto& [id, client] : clients_) loop_.unwatch(client->token);
    loop_.unwatch(udp_token_);
    loop_.unwatch(tcp_token_);
  }

  Result<void> start() {
    KILN_TRY(set_nonblocking(udp_.get()));
    udp_token_ = KILN_TRY(loop_.watch(udp_.get(), EPOLLIN, [this](uint32_t) { on_udp(); }));
    if (tcp_) {
      KILN_TRY(set_nonblocking(tcp_.get()));
      tcp_token_ = KILN_TRY(loop_.watch(tcp_.get(), EPOLLIN, [this](uint32_t) { on_accept(); }));
    }
    return ok();
  }

  void tick(Clock::time_point now) {
    for (auto it = exchanges_.begin(); it != exchanges_.end();) {
      auto next = std::next(it);
      it->second.exchange->tick(now);
      if (it->second.exchange->finished()) complete(it);
      it = next;
    }
    for (auto it = clients_.begin(); it != clients_.end();) {
      auto& client = *it->second;
      if (client.in_flight == 0 && client.outbound.empty() &&
          now - client.last_active >= options_.tcp_idle_timeout) {
        loop_.unwatch(client.token);
        it = clients_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  // Where a forwarded query's reply goes.
  struct Pending {
    std::unique_ptr<Exchange> exchange;
    dns::Query query;
    std::string raw;
    SocketAddress udp_client;  // family 0: a TCP client
    uint64_t tcp_client = 0;
  };

  void on_udp() {
    for (int i = 0; i < 64; ++i) {
      char buffer[dns::kMaxMessage];
      SocketAddress from;
      from.length = sizeof from.storage;
      ssize_t n = ::recvfrom(udp_.get(), buffer, sizeof buffer, 0, from.get(), &from.length);
      if (n < 0) return;
      std::string_view raw(buffer, static_cast<size_t>(n));
      auto reply = handle(raw, from, 0);
      if (!reply) continue;
      const std::string& bytes = *reply;
      (void)::sendto(udp_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL, from.get(), from.length);
    }
  }

  // A reply now, or nothing (dropped, or forwarded: the reply comes later).
  std::optional<std::string> handle(std::string_view raw, const SocketAddress& udp_client,
                                    uint64_t tcp_client) {
    auto query = dns::parse_query(raw);
    if (!query) {
      auto id = dns::message_id(raw);
      // A header we can read and that is not itself a reply (never answer replies: no reflection loops).
      if (!id || (static_cast<uint8_t>(raw[2]) & 0x80)) return std::nullopt;
      uint16_t flags =
          static_cast<uint16_t>((static_cast<uint8_t>(raw[2]) << 8) | static_cast<uint8_t>(raw[3]));
      return dns::make_header_reply(*id, flags, dns::Rcode::kFormErr);
    }
    if (query->response()) return std::nullopt;
    if (query->opcode() != 0) return dns::make_header_reply(query->id, query->flags, dns::Rcode::kNotImp);
    std::string client_ip;
    if (tcp_client != 0) {
      if (auto client = clients_.find(tcp_client); client != clients_.end())
        client_ip = client->second->peer_ip;
    } else if (udp_client.length != 0) {
      client_ip = udp_client.ip();
    }
    if (auto local = answer_locally(*query, raw, client_ip)) return local;
    if (upstreams_.empty() || exchanges_.size() >= options_.max_pending)
      return dns::make_reply(*query, raw, dns::Rcode::kServFail, {});
    uint64_t id = next_id_++;
    auto exchange = std::make_unique<Exchange>(loop_, upstreams_, options_, std::string(raw), tcp_client != 0,
                                               [this, id](uint32_t events) { on_exchange(id, events); });
    Exchange* raw_exchange = exchange.get();
    auto [it, inserted] = exchanges_.emplace(
        id, Pending{std::move(exchange), *query, std::string(raw), udp_client, tcp_client});
    if (tcp_client) clients_.at(tcp_client)->in_flight++;
    raw_exchange->start();
    if (raw_exchange->finished()) complete(it);
    return std::nullopt;
  }

  std::vector<std::string> addresses_of(const std::string& name, const std::string& client_ip) {
    if (!lookup_.forward || name.empty()) return {};
    auto found = lookup_.forward(name, client_ip);
    // Docker answers NAME.NETWORK too: the network's name is a domain for its containers.
    const std::string& network = lookup_.network_name;
    if (found.empty() && !network.empty() && name.size() > network.size() + 1 &&
        name.compare(name.size() - network.size(), network.size(), network) == 0 &&
        name[name.size() - network.size() - 1] == '.')
      found = lookup_.forward(name.substr(0, name.size() - network.size() - 1), client_ip);
    return found;
  }

  std::optional<std::string> answer_locally(const dns::Query& query, std::string_view raw,
                                            const std::string& client_ip) {
    const dns::Question& question = query.question;
    if (question.klass != dns::kClassIn || !question.plain) return std::nullopt;
    if (question.type == dns::kTypePtr) {
      auto ip = dns::ipv4_of_reverse_name(question.name);
      if (!ip || !lookup_.reverse) return std::nullopt;
      auto name = lookup_.reverse(*ip);
      if (!name || name->empty()) return std::nullopt;
      return dns::make_reply(query, raw, dns::Rcode::kNoError,
                             {{dns::kTypePtr, kTtl, dns::name_rdata(*name)}});
    }
    auto addresses = addresses_of(question.name, client_ip);
    if (addresses.empty()) return std::nullopt;
    std::vector<dns::Answer> answers;
    if (question.type == dns::kTypeA) {
      // Rotated on each answer, as Docker shuffles them: clients that take the first spread over all.
      size_t start = rotation_++ % addresses.size();
      for (size_t i = 0; i < addresses.size(); ++i) {
        if (auto rdata = dns::a_rdata(addresses[(start + i) % addresses.size()]))
          answers.push_back({dns::kTypeA, kTtl, *rdata});
      }
    }
    // Any other type of a name of ours (AAAA: the network has no IPv6): the name exists, no such record.
    return dns::make_reply(query, raw, dns::Rcode::kNoError, answers);
  }

  void on_exchange(uint64_t id, uint32_t events) {
    auto it = exchanges_.find(id);
    if (it == exchanges_.end()) return;
    it->second.exchange->on_event(events);
    if (it->second.exchange->finished()) complete(it);
  }

  void complete(std::unordered_map<uint64_t, Pending>::iterator it) {
    Pending pending = std::move(it->second);
    exchanges_.erase(it);
    std::string reply = pending.exchange->reply();
    if (reply.empty()) {
      reply = dns::make_reply(pending.query, pending.raw, dns::Rcode::kServFail, {});
    } else if (pending.tcp_client == 0 && reply.size() > pending.query.udp_size &&
               !pending.exchange->truncated_reply().empty()) {
      // Too big for this UDP client: it gets the truncated reply and asks again over TCP.
      reply = pending.exchange->truncated_reply();
    }
    if (pending.tcp_client == 0) {
      (void)::sendto(udp_.get(), reply.data(), reply.size(), MSG_NOSIGNAL, pending.udp_client.get(),
                     pending.udp_client.length);
      return;
    }
    auto client = clients_.find(pending.tcp_client);
    if (client == clients_.end()) return;
    client->second->in_flight--;
    send_to_client(client, reply);
  }

  void on_accept() {
    for (int i = 0; i < 16; ++i) {
      SocketAddress peer;
      peer.length = sizeof(peer.storage);
      UniqueFd fd(::accept4(tcp_.get(), peer.get(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) return;
      if (clients_.size() >= options_.max_tcp_clients) continue;  // closed at once
      uint64_t id = next_id_++;
      auto client = std::make_unique<TcpClient>();
      client->fd = std::move(fd);
      client->last_active = Clock::now();
      client->peer_ip = peer.ip();
      auto token =
          loop_.watch(client->fd.get(), EPOLLIN, [this, id](uint32_t events) { on_client(id, events); });
      if (!token) continue;
      client->token = *token;
      clients_.emplace(id, std::move(client));
    }
  }

  void on_client(uint64_t id, uint32_t events) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    TcpClient& client = *it->second;
    client.last_active = Clock::now();
    if (events & EPOLLERR) return drop_client(it);
    if ((events & EPOLLOUT) && !client.outbound.empty()) {
      ssize_t n = ::send(client.fd.get(), client.outbound.data(), client.outbound.size(), MSG_NOSIGNAL);
      if (n < 0 && !transient(errno)) return drop_client(it);
      if (n > 0) client.outbound.erase(0, static_cast<size_t>(n));
    }
    if ((events & (EPOLLIN | EPOLLHUP)) && !client.eof) {
      char buffer[16384];
      ssize_t n = ::recv(client.fd.get(), buffer, sizeof buffer, 0);
      if (n == 0) client.eof = true;
      if (n < 0 && !transient(errno)) return drop_client(it);
      if (n > 0) client.inbound.append(buffer, static_cast<size_t>(n));
      // Each complete message, in order; a handled query may complete synchronously and write.
      while (client.inbound.size() >= 2) {
        size_t length =
            (static_cast<uint8_t>(client.inbound[0]) << 8) | static_cast<uint8_t>(client.inbound[1]);
        if (client.inbound.size() < 2 + length) break;
        std::string message = client.inbound.substr(2, length);
        client.inbound.erase(0, 2 + length);
        auto reply = handle(message, SocketAddress{}, id);
        it = clients_.find(id);
        if (it == clients_.end()) return;
        if (reply) {
          send_to_client(it, *reply);
          it = clients_.find(id);
          if (it == clients_.end()) return;
        }
      }
    }
    update_client(it);
  }

  void send_to_client(std::unordered_map<uint64_t, std::unique_ptr<TcpClient>>::iterator it,
                      std::string_view reply) {
    TcpClient& client = *it->second;
    if (client.outbound.size() + reply.size() + 2 > kMaxTcpOutbound) return drop_client(it);  // not reading
    client.outbound += framed(reply);
    update_client(it);
  }

  void update_client(std::unordered_map<uint64_t, std::unique_ptr<TcpClient>>::iterator it) {
    TcpClient& client = *it->second;
    if (client.eof && client.in_flight == 0 && client.outbound.empty()) return drop_client(it);
    uint32_t events = 0;
    // Stop reading a client that queues more than it takes.
    if (!client.eof && client.outbound.size() < kMaxTcpOutbound / 2) events |= EPOLLIN;
    if (!client.outbound.empty()) events |= EPOLLOUT;
    loop_.modify(client.token, events);
  }

  void drop_client(std::unordered_map<uint64_t, std::unique_ptr<TcpClient>>::iterator it) {
    loop_.unwatch(it->second->token);
    clients_.erase(it);
  }

  EventLoop& loop_;
  const std::vector<SocketAddress>& upstreams_;
  const DnsServerOptions& options_;
  UniqueFd udp_;
  UniqueFd tcp_;
  NameLookup lookup_;
  EventLoop::Token udp_token_ = 0;
  EventLoop::Token tcp_token_ = 0;
  uint64_t next_id_ = 1;
  size_t rotation_ = 0;
  std::unordered_map<uint64_t, Pending> exchanges_;
  std::unordered_map<uint64_t, std::unique_ptr<TcpClient>> clients_;
};

class DnsCore {
 public:
  DnsCore(std::vector<SocketAddress> upstreams, DnsServerOptions options, std::unique_ptr<EventLoop> loop)
      : upstreams_(std::move(upstreams)), options_(options), loop_(std::move(loop)) {
    auto interval = std::clamp(options_.upstream_timeout / 4, std::chrono::milliseconds(10),
                               std::chrono::milliseconds(250));
    loop_->run_sync([&] {
      loop_->set_tick(interval, [this] {
        auto now = Clock::now();
        for (auto& [id, zone] : zones_) zone->tick(now);
      });
    });
  }
  ~DnsCore() {
    loop_->run_sync([this] { zones_.clear(); });
    loop_.reset();
  }

  Result<uint64_t> add(UniqueFd udp, UniqueFd tcp, NameLookup lookup) {
    Result<uint64_t> result = Error::internal("not registered");
    loop_->run_sync([&] {
      auto zone = std::make_unique<Zone>(*loop_, upstreams_, options_, std::move(udp), std::move(tcp),
                                         std::move(lookup));
      if (auto started = zone->start(); !started) {
        result = started.error();
        return;
      }
      uint64_t id = next_id_++;
      zones_.emplace(id, std::move(zone));
      result = id;
    });
    return result;
  }

  void remove(uint64_t id) {
    loop_->run_sync([&] { zones_.erase(id); });
  }

 private:
  std::vector<SocketAddress> upstreams_;
  DnsServerOptions options_;
  std::unique_ptr<EventLoop> loop_;
  // Loop thread only:
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Zone>> zones_;
};

}  // namespace detail

std::vector<std::string> nameservers_of_resolv_conf(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    size_t at = line.find_first_not_of(" \t");
    if (at == std::string_view::npos) continue;
    line.remove_prefix(at);
    constexpr std::string_view kKeyword = "nameserver";
    if (line.substr(0, kKeyword.size()) != kKeyword || line.size() == kKeyword.size() ||
        (line[kKeyword.size()] != ' ' && line[kKeyword.size()] != '\t'))
      continue;
    line.remove_prefix(kKeyword.size());
    at = line.find_first_not_of(" \t");
    if (at == std::string_view::npos) continue;
    line.remove_prefix(at);
    std::string_view ip = line.substr(0, line.find_first_of(" \t#;\r"));
    // A scoped IPv6 address ("fe80::1%eth0") names an interface of the host; not usable from here.
    if (ip.find('%') != std::string_view::npos) continue;
    auto address = parse_ip(ip, 53);
    if (address) out.push_back(address->to_string());
  }
  return out;
}

DnsServer::DnsServer(std::vector<std::string> upstream, DnsServerOptions options) {
  if (upstream.empty()) {
    auto resolv_conf = read_file("/etc/resolv.conf", 1 << 20);
    if (resolv_conf) upstream = nameservers_of_resolv_conf(*resolv_conf);
  }
  std::vector<SocketAddress> addresses;
  for (const auto& text : upstream) {
    auto address = parse_ip_port(text, 53);
    if (!address) {
      log::warn("dns: ignoring an upstream resolver",
                {{"upstream", text}, {"error", address.error().message()}});
      continue;
    }
    addresses.push_back(*address);
    upstream_.push_back(address->to_string());
  }
  auto loop = EventLoop::create();
  if (!loop) {
    log::error("dns: cannot start its event loop", {{"error", loop.error().message()}});
    std::abort();
  }
  core_ = std::make_shared<detail::DnsCore>(std::move(addresses), options, std::move(*loop));
}

DnsServer::~DnsServer() = default;

Result<std::unique_ptr<DnsZone>> DnsServer::serve(UniqueFd udp, UniqueFd tcp_listening, NameLookup lookup) {
  if (!udp) return Error::invalid_argument("dns: no UDP socket to serve on");
  uint64_t id = KILN_TRY(core_->add(std::move(udp), std::move(tcp_listening), std::move(lookup)));
  return std::unique_ptr<DnsZone>(new DnsZone(core_, id));
}

DnsZone::~DnsZone() {
  core_->remove(id_);
}

}  // namespace kiln::net

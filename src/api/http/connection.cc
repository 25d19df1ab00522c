#include "api/http/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <limits>

#include "api/http/socket_stream.h"
#include "common/errno_text.h"
#include "common/log.h"

namespace kiln::api::http::detail {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using std::chrono::milliseconds;

enum class Next { kKeepAlive, kClose, kHandedOver };

struct Served {
  Next next;
  int status;  // for the access log; 0 when nothing was answered
};

std::string_view sv(boost::beast::string_view text) {
  return {text.data(), text.size()};
}

std::string_view reason(int status) {
  if (status == 101) return "Switching Protocols";
  auto known = bhttp::int_to_status(static_cast<unsigned>(status));
  return known == bhttp::status::unknown ? std::string_view("Unknown") : sv(bhttp::obsolete_reason(known));
}

bool safe_header(const std::string& name, const std::string& value) {
  // A handler echoing client data into a header must not be able to split the response.
  return name.find_first_of("\r\n:") == std::string::npos && value.find_first_of("\r\n") == std::string::npos;
}

// Connection, Content-Length and Transfer-Encoding are the server's to set.
bool reserved_header(std::string_view name) {
  return iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") || iequals(name, "Connection");
}

void append_headers(std::string& out, const Headers& headers) {
  for (const auto& [name, value] : headers.entries()) {
    if (reserved_header(name) || !safe_header(name, value)) continue;
    out += fmt::format("{}: {}\r\n", name, value);
  }
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// Before closing on an error, let the client read our answer: closing with unread input makes the kernel
// send RST, which can destroy the response in flight. Half-close, then drain briefly.
void linger_close(SocketStream& stream) {
  (void)::shutdown(stream.fd(), SHUT_WR);
  stream.set_deadline(Clock::now() + milliseconds(1000));
  char sink[16384];
  size_t drained = 0;
  boost::system::error_code ec;
  while (!ec && drained < (1u << 20)) drained += stream.read_raw(sink, sizeof sink, ec);
}

void access_log(const Request& request, int status, Clock::time_point start, std::string_view mode) {
  auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  log::write(status >= 500 ? log::Level::kInfo : log::Level::kDebug, "http request",
             {{"method", request.method},
              {"path", request.path},
              {"status", status},
              {"duration_ms", ms},
              {"mode", mode},
              {"peer", request.peer}});
}

class StreamWriter final : public ChunkWriter {
 public:
  StreamWriter(SocketStream& stream, int stop_fd, milliseconds io_timeout, bool chunked)
      : stream_(stream), stop_fd_(stop_fd), io_timeout_(io_timeout), chunked_(chunked) {}

  Result<void> write_chunk(std::string_view data) override {
    if (failed_) return Error::unavailable("client went away");
    if (data.empty()) return ok();
    std::string frame = chunked_ ? fmt::format("{:x}\r\n{}\r\n", data.size(), data) : std::string(data);
    return send(frame);
  }
  bool client_gone() const override {
    if (failed_ || peer_gone(stream_.fd())) return true;
    pollfd stop{.fd = stop_fd_, .events = POLLIN};
    return ::poll(&stop, 1, 0) > 0;
  }
  int poll_fd() const override { return stream_.fd(); }

  Result<void> finish() { return chunked_ ? send("0\r\n\r\n") : ok(); }
  bool failed() const { return failed_; }

 private:
  Result<void> send(std::string_view bytes) {
    stream_.set_deadline(Clock::now() + io_timeout_);
    Result<void> sent = stream_.write_all(bytes);
    if (!sent) failed_ = true;
    return sent;
  }

  SocketStream& stream_;
  int stop_fd_;
  milliseconds io_timeout_;
  bool chunked_;
  bool failed_ = false;
};

// Request::body_reader for streaming-body routes: Beast's parser over a caller-provided buffer.
class ParserBodyReader final : public BodyReader {
 public:
  ParserBodyReader(SocketStream& stream, beast::flat_buffer& buffer,
                   bhttp::request_parser<bhttp::buffer_body>& parser, milliseconds io_timeout)
      : stream_(stream), buffer_(buffer), parser_(parser), io_timeout_(io_timeout) {}

  Result<size_t> read(char* data, size_t size) override {
    if (size == 0) return size_t{0};
    while (!parser_.is_done()) {
      parser_.get().body().data = data;
      parser_.get().body().size = size;
      stream_.set_deadline(Clock::now() + io_timeout_);
      boost::system::error_code ec;
      // read_some, not read: read() would wait to fill the whole buffer.
      bhttp::read_some(stream_, buffer_, parser_, ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      size_t got = size - parser_.get().body().size;
      if (got > 0) return got;
      if (!ec) continue;  // parsed framing (a chunk header) but no data yet
      if (ec == boost::asio::error::timed_out) return Error::timeout("timed out reading the request body");
      if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream ||
          ec == boost::asio::error::operation_aborted || ec.category() == boost::system::system_category()) {
        return Error::unavailable("the client went away in the middle of the request body");
      }
      return Error::invalid_argument(fmt::format("malformed request body: {}", ec.message()));
    }
    return size_t{0};
  }

 private:
  SocketStream& stream_;
  beast::flat_buffer& buffer_;
  bhttp::request_parser<bhttp::buffer_body>& parser_;
  milliseconds io_timeout_;
};

class ConnectionCodec {
 public:
  explicit ConnectionCodec(const ConnectionContext& context)
      : context_(context), stream_(context.fd, context.stop_fd) {}

  void run() {
    for (;;) {
      Next next = Next::kClose;
      try {
        next = serve_one();
      } catch (const std::exception& e) {  // bad_alloc and the like; never take the daemon down
        log::error("http connection failed", {{"peer", context_.peer}, {"error", e.what()}});
      }
      if (next != Next::kKeepAlive) return;
    }
  }

 private:
  Next serve_one();
  Next reply_error(const Error& error, int status, Clock::time_point start);
  Result<Request> build_request(const bhttp::request_header<>& header, std::string body);
  Next dispatch(Request& request, bool keep_alive, bool http10, Clock::time_point start);
  Next send_response(Request& request, Response& response, bool keep_alive, Clock::time_point start);
  Next send_stream(Request& request, StreamReply& reply, bool keep_alive, bool http10,
                   Clock::time_point start);
  Next send_hijack(Request& request, HijackReply& reply, Clock::time_point start);

  const ConnectionContext& context_;
  SocketStream stream_;
  beast::flat_buffer buffer_;  // survives across keep-alive requests: it may hold the next pipelined one
};

Next ConnectionCodec::reply_error(const Error& error, int status, Clock::time_point start) {
  Response response = json_response(status, context_.router.error_formatter()(status, error));
  stream_.set_deadline(Clock::now() + std::min(context_.options.io_timeout, milliseconds(5000)));
  (void)stream_.write_all(render_response(response, false));
  linger_close(stream_);
  auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  // Debug, not info: hostile clients must not be able to flood the log.
  log::debug("http request rejected",
             {{"status", status}, {"error", error.message()}, {"duration_ms", ms}, {"peer", context_.peer}});
  return Next::kClose;
}

Next ConnectionCodec::serve_one() {
  const ServerOptions& options = context_.options;
  // The header first, with no body type yet: the route decides whether the body is read whole (with the
  // server's limit) or handed to the handler as it arrives.
  bhttp::request_parser<bhttp::empty_body> head;
  head.header_limit(options.header_limit);
  // Not boost::none: Beast 1.74 compares Content-Length against an empty optional as "over the limit".
  head.body_limit(std::numeric_limits<std::uint64_t>::max());

  stream_.set_deadline(Clock::now() + options.header_timeout);
  boost::system::error_code ec;
  bhttp::read_header(stream_, buffer_, head, ec);
  Clock::time_point start = Clock::now();
  if (ec) {
    bool idle = !head.got_some() && buffer_.size() == 0;
    if (ec == bhttp::error::end_of_stream || ec == boost::asio::error::operation_aborted ||
        (idle && ec == boost::asio::error::timed_out)) {
      return Next::kClose;  // the client left, the server stops, or a keep-alive connection idled out
    }
    if (ec == bhttp::error::header_limit)
      return reply_error(Error::invalid_argument("request header too large"), 431, start);
    if (ec == boost::asio::error::timed_out)
      return reply_error(Error::timeout("timed out reading the request header"), 408, start);
    if (ec == bhttp::error::partial_message || ec.category() == boost::system::system_category())
      return Next::kClose;
    return reply_error(Error::invalid_argument(fmt::format("malformed request: {}", ec.message())), 400,
                       start);
  }

  bool keep_alive = head.get().keep_alive();
  bool http10 = head.get().version() < 11;
  bool streaming = context_.router.streams_body(sv(head.get().method_string()), sv(head.get().target()));
  if (!streaming && head.content_length() && *head.content_length() > options.body_limit)
    return reply_error(Error::invalid_argument("request body too large"), 413, start);
  if (!head.is_done() && iequals(sv(head.get()[bhttp::field::expect]), "100-continue")) {
    stream_.set_deadline(Clock::now() + options.io_timeout);
    if (!stream_.write_all("HTTP/1.1 100 Continue\r\n\r\n")) return Next::kClose;
  }

  if (streaming) {
    bhttp::request_parser<bhttp::buffer_body> parser(std::move(head));
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    Result<Request> built = build_request(parser.get().base(), {});
    if (!built) return reply_error(built.error(), 400, start);
    ParserBodyReader reader(stream_, buffer_, parser, options.io_timeout);
    built->body_reader = &reader;
    // Whatever the handler left unread is still on the wire: this connection cannot carry another request.
    Next next = dispatch(*built, false, http10, start);
    if (next == Next::kClose && !parser.is_done()) linger_close(stream_);  // let the client read the answer
    return next;
  }

  bhttp::request_parser<bhttp::string_body> parser(std::move(head));
  parser.body_limit(options.body_limit);
  if (!parser.is_done()) {
    stream_.set_deadline(Clock::now() + options.io_timeout);
    bhttp::read(stream_, buffer_, parser, ec);
    if (ec) {
      if (ec == bhttp::error::body_limit)
        return reply_error(Error::invalid_argument("request body too large"), 413, start);
      if (ec == boost::asio::error::timed_out)
        return reply_error(Error::timeout("timed out reading the request body"), 408, start);
      if (ec == bhttp::error::partial_message || ec == boost::asio::error::operation_aborted ||
          ec.category() == boost::system::system_category()) {
        return Next::kClose;  // the client left mid-body or the server stops: nobody to answer
      }
      return reply_error(Error::invalid_argument(fmt::format("malformed request body: {}", ec.message())),
                         400, start);
    }
  }
  Result<Request> built = build_request(parser.get().base(), std::move(parser.get().body()));
  if (!built) return reply_error(built.error(), 400, start);
  return dispatch(*built, keep_alive, http10, start);
}

Next ConnectionCodec::dispatch(Request& request, bool keep_alive, bool http10, Clock::time_point start) {
  Reply reply;
  try {
    reply = context_.router.dispatch(request);
  } catch (const std::exception& e) {
    log::error("http handler threw",
               {{"method", request.method}, {"path", request.path}, {"error", e.what()}});
    reply = context_.router.error(Error::internal(fmt::format("handler failed: {}", e.what())));
  }
  if (auto* response = std::get_if<Response>(&reply))
    return send_response(request, *response, keep_alive, start);
  if (auto* stream = std::get_if<StreamReply>(&reply))
    return send_stream(request, *stream, keep_alive, http10, start);
  return send_hijack(request, std::get<HijackReply>(reply), start);
}

Result<Request> ConnectionCodec::build_request(const bhttp::request_header<>& header, std::string body) {
  Request request;
  request.method = std::string(header.method_string());
  request.target = std::string(header.target());
  if (request.target.empty() || request.target.front() != '/') {
    return Error::invalid_argument("request target must be an absolute path");
  }
  size_t question = request.target.find('?');
  request.path = request.target.substr(0, question);
  if (question != std::string::npos) {
    request.query = KILN_TRY(QueryParams::parse(std::string_view(request.target).substr(question + 1)));
  }
  for (const auto& field : header)
    request.headers.add(std::string(field.name_string()), std::string(field.value()));
  request.body = std::move(body);
  request.peer = context_.peer;
  return request;
}

Next ConnectionCodec::send_response(Request& request, Response& response, bool keep_alive,
                                    Clock::time_point start) {
  if (auto connection = response.headers.get("Connection"); connection && iequals(*connection, "close"))
    keep_alive = false;
  stream_.set_deadline(Clock::now() + context_.options.io_timeout);
  Result<void> sent = stream_.write_all(render_response(response, keep_alive, request.method != "HEAD"));
  access_log(request, response.status, start, "response");
  return sent && keep_alive ? Next::kKeepAlive : Next::kClose;
}

Next ConnectionCodec::send_stream(Request& request, StreamReply& reply, bool keep_alive, bool http10,
                                  Clock::time_point start) {
  // HTTP/1.0 has no chunked encoding: send the raw bytes and mark the end by closing.
  bool chunked = !http10;
  if (!chunked) keep_alive = false;
  std::string head = fmt::format("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
  append_headers(head, reply.headers);
  head += chunked ? "Transfer-Encoding: chunked\r\n" : "";
  head += keep_alive ? "\r\n" : "Connection: close\r\n\r\n";
  StreamWriter writer(stream_, context_.stop_fd, context_.options.io_timeout, chunked);
  stream_.set_deadline(Clock::now() + context_.options.io_timeout);
  if (!stream_.write_all(head)) return Next::kClose;
  bool threw = false;
  if (reply.body) {
    try {
      reply.body(writer);
    } catch (const std::exception& e) {
      threw = true;  // mid-stream there is no way to report it but to cut the stream short
      log::error("http stream handler threw", {{"path", request.path}, {"error", e.what()}});
    }
  }
  bool finished = !threw && !writer.failed() && writer.finish();
  access_log(request, reply.status, start, "stream");
  return finished && keep_alive ? Next::kKeepAlive : Next::kClose;
}

Next ConnectionCodec::send_hijack(Request& request, HijackReply& reply, Clock::time_point start) {
  auto connection = request.headers.get("Connection");
  auto protocol = request.headers.get("Upgrade");
  bool upgrade = connection && protocol && !protocol->empty() && has_token(*connection, "upgrade");
  if (upgrade && !safe_header("Upgrade", std::string(*protocol))) upgrade = false;
  int status = upgrade ? 101 : 200;
  std::string head =
      upgrade ? fmt::format("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {}\r\n",
                            *protocol)
              : std::string("HTTP/1.1 200 OK\r\n");
  if (safe_header("Content-Type", reply.content_type))
    head += fmt::format("Content-Type: {}\r\n", reply.content_type);
  append_headers(head, reply.headers);
  head += "\r\n";
  stream_.set_deadline(Clock::now() + context_.options.io_timeout);
  if (!stream_.write_all(head)) return Next::kClose;

  // The handler gets its own descriptor: the server keeps the original so stop() can shut the socket down
  // while the handler runs, and the handler may keep its copy after returning.
  int copy = ::fcntl(context_.fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    log::error("cannot hand over a hijacked connection", {{"error", errno_text(errno)}});
    return Next::kClose;
  }
  RawConnection raw{.fd = UniqueFd(copy)};
  auto pending = buffer_.data();
  raw.buffered.assign(static_cast<const char*>(pending.data()), pending.size());
  buffer_.consume(buffer_.size());
  access_log(request, status, start, "hijack");
  if (reply.body) {
    try {
      reply.body(std::move(raw));
    } catch (const std::exception& e) {
      log::error("http hijack handler threw", {{"path", request.path}, {"error", e.what()}});
    }
  }
  return Next::kHandedOver;
}

}  // namespace

std::string render_response(const Response& response, bool keep_alive, bool include_body) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
  append_headers(out, response.headers);
  bool bodiless = response.status < 200 || response.status == 204 || response.status == 304;
  if (!bodiless) out += fmt::format("Content-Length: {}\r\n", response.body.size());
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (include_body && !bodiless) out += response.body;
  return out;
}

void serve_connection(const ConnectionContext& context) {
  ConnectionCodec(context).run();
}

}  // namespace kiln::api::http::detail

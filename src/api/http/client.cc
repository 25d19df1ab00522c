#include "api/http/client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "api/http/socket_stream.h"
#include "common/errno_text.h"

namespace kiln::api::http {
namespace {

namespace bhttp = boost::beast::http;
using detail::Clock;

Error connect_error(const Endpoint& endpoint, const ClientOptions& options, int errnum) {
  std::string message = fmt::format("cannot connect to {} at {}: {}", options.peer_name, endpoint.to_string(),
                                    errno_text(errnum));
  if (errnum == EACCES || errnum == EPERM) {
    return Error(ErrorCategory::kPermissionDenied, message + " — does this user have access to the socket?");
  }
  return Error::unavailable(fmt::format("{} — is {} running?", message, options.peer_name));
}

Result<UniqueFd> connect_unix(const Endpoint& endpoint, const ClientOptions& options) {
  sockaddr_un address{.sun_family = AF_UNIX};
  if (endpoint.path.size() >= sizeof address.sun_path) {
    return Error::invalid_argument(fmt::format("unix socket path too long: {}", endpoint.path));
  }
  std::memcpy(address.sun_path, endpoint.path.c_str(), endpoint.path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::last_os_error("socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return connect_error(endpoint, options, errno);
  return fd;
}

Result<UniqueFd> connect_tcp(const Endpoint& endpoint, const ClientOptions& options) {
  addrinfo hints{.ai_flags = AI_NUMERICSERV, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  addrinfo* found = nullptr;
  std::string port = std::to_string(endpoint.port);
  int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Error::unavailable(
        fmt::format("cannot resolve {} for {}: {}", endpoint.host, options.peer_name, ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(found, ::freeaddrinfo);
  int last_errno = ECONNREFUSED;
  for (addrinfo* candidate = found; candidate != nullptr; candidate = candidate->ai_next) {
    UniqueFd fd(::socket(candidate->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return Error::last_os_error("socket");
    do {
      rc = ::connect(fd.get(), candidate->ai_addr, candidate->ai_addrlen);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return fd;
    last_errno = errno;
  }
  return connect_error(endpoint, options, last_errno);
}

bool safe_field(std::string_view text) {
  return text.find_first_of("\r\n") == std::string_view::npos;
}

std::string render_request(const ClientRequest& request, const Endpoint& endpoint, const Headers& extra) {
  std::string host = endpoint.kind == Endpoint::Kind::kUnix ? "localhost" : endpoint.to_string().substr(6);
  std::string out = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\n", request.method, request.target, host);
  for (const Headers* headers : {&request.headers, &extra}) {
    for (const auto& [name, value] : headers->entries()) {
      if (iequals(name, "Content-Length") || iequals(name, "Host") || !safe_field(name) || !safe_field(value))
        continue;
      out += fmt::format("{}: {}\r\n", name, value);
    }
  }
  if (request.body_source) {
    if (request.body_length) {
      out += fmt::format("Content-Length: {}\r\n", *request.body_length);
    } else {
      out += "Transfer-Encoding: chunked\r\n";
    }
    return out + "\r\n";
  }
  bool wants_length = !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
                      request.method == "PATCH";
  if (wants_length) out += fmt::format("Content-Length: {}\r\n", request.body.size());
  out += "\r\n";
  out += request.body;
  return out;
}

// One request/response exchange on a fresh connection.
class Exchange {
 public:
  Exchange(UniqueFd fd, const ClientOptions& options)
      : fd_(std::move(fd)), stream_(fd_.get(), -1), options_(options) {
    parser_.header_limit(1u << 20);
    // request() enforces its own cap; streams are unbounded by nature. (Not boost::none: Beast 1.74 compares
    // Content-Length against an empty optional as "over the limit".)
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
    if (options.timeout.count() > 0) stream_.set_deadline(Clock::now() + options.timeout);
  }

  // Sends the request and reads the response head. A failed send may still have a response waiting (a
  // 413 sent before our body was read), so the head is tried before the send error is reported.
  Result<Response> start(const ClientRequest& request, const Endpoint& endpoint, const Headers& extra = {}) {
    if (request.method.empty() || !safe_field(request.method) ||
        request.method.find(' ') != std::string::npos || request.target.empty() ||
        request.target.front() != '/' || !safe_field(request.target) ||
        request.target.find(' ') != std::string::npos) {
      return Error::invalid_argument(
          fmt::format("invalid request line: {} {}", request.method, request.target));
    }
    parser_.skip(request.method == "HEAD");
    Result<void> sent = stream_.write_all(render_request(request, endpoint, extra));
    if (sent && request.body_source) {
      Result<bool> streamed = send_body(request);
      if (!streamed) return streamed.error();  // the source failed: nothing sensible to read
      if (!*streamed) sent = Error::unavailable("the connection closed during the upload");
    }
    boost::system::error_code ec;
    bhttp::read_header(stream_, buffer_, parser_, ec);
    if (ec && !sent) return sent.error().with_context(fmt::format("sending to {}", options_.peer_name));
    if (ec) return read_error(ec);
    Response response{.status = static_cast<int>(parser_.get().result_int())};
    for (const auto& field : parser_.get())
      response.headers.add(std::string(field.name_string()), std::string(field.value()));
    return response;
  }

  // Streams request.body_source; false when the connection broke (the server may have answered early).
  Result<bool> send_body(const ClientRequest& request) {
    bool chunked = !request.body_length;
    uint64_t sent_bytes = 0;
    std::vector<char> chunk(256 * 1024);
    for (;;) {
      size_t n = KILN_TRY(request.body_source(chunk.data(), chunk.size()));
      if (n == 0) break;
      sent_bytes += n;
      if (request.body_length && sent_bytes > *request.body_length)
        return Error::invalid_argument("the request body is longer than its announced length");
      std::string_view data(chunk.data(), n);
      bool written = chunked ? stream_.write_all(fmt::format("{:x}\r\n", n)) && stream_.write_all(data) &&
                                   stream_.write_all("\r\n")
                             : static_cast<bool>(stream_.write_all(data));
      if (!written) return false;
    }
    if (request.body_length && sent_bytes != *request.body_length)
      return Error::invalid_argument("the request body is shorter than its announced length");
    return !chunked || static_cast<bool>(stream_.write_all("0\r\n\r\n"));
  }

  // Feeds body bytes to `sink` until the body ends or `sink` returns false.
  Result<void> read_body(const std::function<bool(std::string_view)>& sink) {
    char chunk[16384];
    while (!parser_.is_done()) {
      parser_.get().body().data = chunk;
      parser_.get().body().size = sizeof chunk;
      boost::system::error_code ec;
      // read_some, not read: read() only returns once the buffer is full, which would hold back a stream.
      bhttp::read_some(stream_, buffer_, parser_, ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) return read_error(ec);
      size_t n = sizeof chunk - parser_.get().body().size;
      if (n > 0 && !sink(std::string_view(chunk, n))) return ok();
    }
    return ok();
  }

  Result<std::string> read_whole_body(size_t limit) {
    std::string body;
    Result<void> read = read_body([&](std::string_view data) {
      if (body.size() + data.size() > limit) return false;
      body.append(data);
      return true;
    });
    if (!read) return read.error();
    if (!parser_.is_done()) return Error::protocol(fmt::format("response body larger than {} bytes", limit));
    return body;
  }

  void clear_deadline() { stream_.set_deadline(std::nullopt); }

  // Bytes read past the head, and the socket, for an upgraded connection.
  RawConnection take_raw() {
    auto pending = buffer_.data();
    RawConnection raw{.buffered = std::string(static_cast<const char*>(pending.data()), pending.size())};
    raw.fd = std::move(fd_);
    return raw;
  }

 private:
  Error read_error(const boost::system::error_code& ec) const {
    if (ec == boost::asio::error::timed_out)
      return Error::timeout(fmt::format("{} did not answer in time", options_.peer_name));
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
        ec.category() == boost::system::system_category()) {
      return Error::unavailable(fmt::format("connection to {} lost: {}", options_.peer_name, ec.message()));
    }
    return Error::protocol(fmt::format("malformed response from {}: {}", options_.peer_name, ec.message()));
  }

  UniqueFd fd_;
  detail::SocketStream stream_;
  const ClientOptions& options_;
  boost::beast::flat_buffer buffer_;
  bhttp::response_parser<bhttp::buffer_body> parser_;
};

Result<UniqueFd> connect_to(const Endpoint& endpoint, const ClientOptions& options) {
  return endpoint.kind == Endpoint::Kind::kUnix ? connect_unix(endpoint, options)
                                                : connect_tcp(endpoint, options);
}

bool is_raw_stream(const Response& response) {
  auto type = response.headers.get("Content-Type");
  return type && type->starts_with("application/vnd.docker.");
}

}  // namespace

ClientRequest ClientRequest::json(std::string method, std::string target, const Json& body) {
  ClientRequest request{.method = std::move(method),
                        .target = std::move(target),
                        .body = body.dump(-1, ' ', false, Json::error_handler_t::replace)};
  request.headers.set("Content-Type", "application/json");
  return request;
}

Result<Client> Client::create(std::string_view host, ClientOptions options) {
  return Client(KILN_TRY(parse_client_endpoint(host)), std::move(options));
}

Result<Response> Client::request(std::string method, std::string target,
                                 const std::optional<Json>& body) const {
  if (body) return request(ClientRequest::json(std::move(method), std::move(target), *body));
  return request(ClientRequest{.method = std::move(method), .target = std::move(target)});
}

Result<Response> Client::request(const ClientRequest& request) const {
  Exchange exchange(KILN_TRY(connect_to(endpoint_, options_)), options_);
  Response response = KILN_TRY(exchange.start(request, endpoint_));
  response.body = KILN_TRY(exchange.read_whole_body(options_.max_body));
  return response;
}

Result<Response> Client::request_stream(const ClientRequest& request,
                                        const std::function<bool(std::string_view)>& on_data) const {
  Exchange exchange(KILN_TRY(connect_to(endpoint_, options_)), options_);
  Response response = KILN_TRY(exchange.start(request, endpoint_));
  if (response.status < 200 || response.status >= 300) {
    response.body = KILN_TRY(exchange.read_whole_body(options_.max_body));
    return response;
  }
  exchange.clear_deadline();  // a stream lasts as long as it lasts
  KILN_TRY(exchange.read_body(on_data));
  return response;
}

Result<RawConnection> Client::request_upgrade(const ClientRequest& request, std::string_view protocol) const {
  return KILN_TRY(request_upgrade_with_head(request, protocol)).connection;
}

Result<UpgradedConnection> Client::request_upgrade_with_head(const ClientRequest& request,
                                                             std::string_view protocol) const {
  Exchange exchange(KILN_TRY(connect_to(endpoint_, options_)), options_);
  Headers upgrade;
  upgrade.set("Connection", "Upgrade");
  upgrade.set("Upgrade", std::string(protocol));
  Response response = KILN_TRY(exchange.start(request, endpoint_, upgrade));
  if (response.status == 101 || (response.status == 200 && is_raw_stream(response)))
    return UpgradedConnection{.head = std::move(response), .connection = exchange.take_raw()};
  response.body = KILN_TRY(exchange.read_whole_body(64 * 1024));
  if (response.status >= 200 && response.status < 300) {
    return Error::protocol(fmt::format("{} answered {} instead of upgrading the connection",
                                       options_.peer_name, response.status));
  }
  return error_from_response(response);
}

Error error_from_response(const Response& response) {
  int status = response.status;
  ErrorCategory category = ErrorCategory::kInternal;
  if (status == 401 || status == 403)
    category = ErrorCategory::kPermissionDenied;
  else if (status == 404)
    category = ErrorCategory::kNotFound;
  else if (status == 409)
    category = ErrorCategory::kFailedPrecondition;
  else if (status == 408 || status == 504)
    category = ErrorCategory::kTimeout;
  else if (status == 501)
    category = ErrorCategory::kUnsupported;
  else if (status == 502)
    category = ErrorCategory::kProtocol;
  else if (status == 503)
    category = ErrorCategory::kUnavailable;
  else if (status >= 400 && status < 500)
    category = ErrorCategory::kInvalidArgument;

  std::string message;
  if (auto json = parse_json(response.body); json && json->is_object()) {
    if (auto it = json->find("message"); it != json->end() && it->is_string())
      message = it->get<std::string>();
  }
  if (message.empty()) {
    message = response.body.substr(0, 512);
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.pop_back();
  }
  if (message.empty()) message = fmt::format("HTTP status {}", status);
  return Error(category, message);
}

}  // namespace kiln::api::http

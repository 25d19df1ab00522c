// HTTP messages as Kiln's handlers see them: a Request in, a Reply out. A Reply is one of three modes:
// a whole Response, a chunked StreamReply (events, logs, progress), or a HijackReply that takes the raw
// socket (Docker attach/exec, HTTP upgrade). Plain values, no Beast types, so this header is cheap to
// include. Values are not shared between threads; a handler runs on its connection's thread.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "api/http/query.h"
#include "common/error.h"
#include "common/json.h"
#include "common/unique_fd.h"

namespace kiln::api::http {

// Header fields in arrival order; names compare case-insensitively (RFC 9110).
class Headers {
 public:
  std::optional<std::string_view> get(std::string_view name) const;  // the first field named `name`
  bool has(std::string_view name) const { return get(name).has_value(); }
  void set(std::string name, std::string value);  // replaces every field named `name`
  void add(std::string name, std::string value);
  void remove(std::string_view name);
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

bool iequals(std::string_view a, std::string_view b);

// A request body read as it arrives, for routes registered with Router::add_streaming_body (image loads and
// imports: gigabytes that must not sit in memory). Content-Length and chunked bodies alike, without a size
// limit: the handler bounds what it keeps.
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // Up to `size` bytes of the body; 0 once it has all been read. kTimeout when the client stalls,
  // kUnavailable when it leaves or the server stops, kInvalidArgument for malformed chunked framing.
  virtual Result<size_t> read(char* data, size_t size) = 0;
};

struct Request {
  std::string method;  // as sent: "GET"
  std::string target;  // as sent: "/v1/vms/a%20b?all=1"
  std::string path;    // target without the query, still percent-encoded, minus any stripped version prefix
  std::string api_version;  // "1.41" when the router stripped a Docker-style "/v1.41" prefix, else empty
  QueryParams query;
  Headers headers;
  std::string body;
  std::map<std::string, std::string, std::less<>> params;  // the route's {name} segments, percent-decoded
  std::string peer;                                        // "unix" or "tcp://1.2.3.4:5678", for logs
  // Streaming-body routes only (then `body` stays empty): the body, still on the wire. Valid until the reply
  // has been sent, a StreamReply's body included; the connection closes afterwards.
  BodyReader* body_reader = nullptr;

  // The {name} path parameter; empty if the route has none by that name.
  std::string_view param(std::string_view name) const;
  // The body as JSON; kInvalidArgument when it is not JSON (an empty body is an error too).
  Result<Json> json_body() const;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
};

Response json_response(int status, const Json& body);
Response text_response(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");
Response empty_response(int status = 204);

// How an API spells an error body. The router holds one; the server uses it for its own 400/404/413/503 too.
// An API with another error shape gives its router a formatter of its own.
using ErrorFormatter = std::function<Json(int status, const Error& error)>;
Json docker_error_body(int status, const Error& error);  // {"message": "..."}
// Status from kiln::api::http_status_for (error_status.h), body from `format`.
Response error_response(const Error& error, const ErrorFormatter& format = docker_error_body);

// Given to a StreamReply body. Every write goes out at once as one chunk (no buffering: an event reaches
// the client when it happens).
class ChunkWriter {
 public:
  virtual ~ChunkWriter() = default;
  // kUnavailable once the client went away (or the server is stopping); stop streaming then. Empty data is
  // a no-op, since an empty chunk would end the stream.
  virtual Result<void> write_chunk(std::string_view data) = 0;
  // True when the client closed its side or the server is stopping. A poll with zero timeout; cheap.
  virtual bool client_gone() const = 0;
  // For the handler's own poll(): ask for POLLRDHUP; any readiness (RDHUP, HUP, ERR) means the client left.
  virtual int poll_fd() const = 0;
};

struct StreamReply {
  int status = 200;
  Headers headers;  // Content-Type and the like; the server adds Transfer-Encoding: chunked
  std::function<void(ChunkWriter&)> body;  // runs on the connection thread; return to end the stream
};

// A socket handed over by a hijack (server side) or an upgrade (client side).
struct RawConnection {
  UniqueFd fd;           // a blocking, full-duplex socket; write to it with MSG_NOSIGNAL or ignore SIGPIPE
  std::string buffered;  // bytes already read past the HTTP head: they come before anything read from fd
};

// The server answers "101 Switching Protocols" (Connection/Upgrade echoing the client's Upgrade) when the
// client asked to upgrade, otherwise Docker's legacy "200 OK", then hands `body` the socket. The body may
// keep the fd past its return (the server then forgets it); until it returns, Server::stop() shuts it down.
struct HijackReply {
  std::string content_type = "application/vnd.docker.raw-stream";
  Headers headers;
  std::function<void(RawConnection)> body;
};

using Reply = std::variant<Response, StreamReply, HijackReply>;
// A handler may fail with an Error; the router turns it into an error response in its API's shape.
using Handler = std::function<Result<Reply>(Request&)>;

}  // namespace kiln::api::http

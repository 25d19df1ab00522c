// Client: HTTP/1.1 client for Kiln's APIs over unix or tcp (the `kiln` CLI talking to kilnd). One
// connection per request, so a Client is just an address plus options: copyable, and usable from several
// threads at once. Whole responses, streamed bodies, and upgrades to a raw full-duplex socket.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "api/http/endpoint.h"
#include "api/http/message.h"
#include "common/error.h"
#include "common/json.h"

namespace kiln::api::http {

struct ClientOptions {
  std::string peer_name = "kilnd";  // named in connection errors: "cannot connect to kilnd at ..."
  // Deadline for a whole request()/the head of a stream or upgrade; zero means none (a VM boot may be slow).
  std::chrono::milliseconds timeout{0};
  size_t max_body = size_t{256} << 20;  // request() refuses bigger responses
};

struct ClientRequest {
  std::string method = "GET";
  std::string target;  // "/v1/vms?all=1", already percent-encoded
  std::string body;
  Headers headers;
  // A body too big to hold in memory (an image upload): read from `body_source` until it returns 0, sent
  // with Content-Length when `body_length` is set, else chunked. `body` must be empty then.
  std::function<Result<size_t>(char* data, size_t size)> body_source;
  std::optional<uint64_t> body_length;

  // A request with a JSON body and Content-Type: application/json.
  static ClientRequest json(std::string method, std::string target, const Json& body);
};

// An upgraded connection with the head that granted it: the status (101, or Docker's legacy 200) and headers
// such as Kiln's X-Kiln-Exec-Id. The head has no body.
struct UpgradedConnection {
  Response head;
  RawConnection connection;
};

class Client {
 public:
  explicit Client(Endpoint endpoint, ClientOptions options = {})
      : endpoint_(std::move(endpoint)), options_(std::move(options)) {}
  // From a KILN_HOST-style string: unix:///path, tcp://host:port, http://host:port or a bare /path.
  static Result<Client> create(std::string_view host, ClientOptions options = {});

  // The whole response, whatever its status (see error_from_response). Errors are transport failures only.
  Result<Response> request(const ClientRequest& request) const;
  Result<Response> request(std::string method, std::string target,
                           const std::optional<Json>& body = std::nullopt) const;

  // For 2xx responses, hands body bytes to `on_data` as they arrive (chunked or not) and returns the
  // response without a body; `on_data` returning false ends the stream and closes the connection. Other
  // statuses come back with their body collected, `on_data` never called.
  Result<Response> request_stream(const ClientRequest& request,
                                  const std::function<bool(std::string_view)>& on_data) const;

  // Asks to upgrade to `protocol` ("tcp" for Docker attach/exec). On 101, or Docker's legacy 200 raw
  // stream, returns the socket and any bytes that followed the response head; any other status is an
  // Error built by error_from_response.
  Result<RawConnection> request_upgrade(const ClientRequest& request,
                                        std::string_view protocol = "tcp") const;
  // The same, keeping the response head.
  Result<UpgradedConnection> request_upgrade_with_head(const ClientRequest& request,
                                                       std::string_view protocol = "tcp") const;

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Endpoint endpoint_;
  ClientOptions options_;
};

// An error response as an Error: the category from the status (404 -> kNotFound, ...), the message from a
// JSON {"message": ...} body when there is one.
Error error_from_response(const Response& response);

}  // namespace kiln::api::http

// Streaming request bodies: routes registered with add_streaming_body read the body as it arrives, beyond
// the server's body limit, Content-Length or chunked; the client uploads from a source without holding it.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <memory>
#include <string>

#include "api/http/client.h"
#include "api/http/server.h"
#include "api/http/test_support.h"

namespace kiln::api::http {
namespace {

using testing::start_server;

// Reads the whole body through the reader and answers its size and a checksum of it.
Result<Reply> count_body(Request& request) {
  if (request.body_reader == nullptr) return Error::internal("no body reader");
  if (!request.body.empty()) return Error::internal("a streaming route got a buffered body");
  uint64_t total = 0;
  uint64_t checksum = 0;
  char buffer[7000];  // odd size: reads straddle chunk boundaries
  for (;;) {
    size_t n = KILN_TRY(request.body_reader->read(buffer, sizeof buffer));
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) checksum = checksum * 31 + static_cast<unsigned char>(buffer[i]);
    total += n;
  }
  return json_response(200, Json{{"size", total}, {"checksum", std::to_string(checksum)}});
}

uint64_t checksum_of(std::string_view data) {
  uint64_t checksum = 0;
  for (char c : data) checksum = checksum * 31 + static_cast<unsigned char>(c);
  return checksum;
}

// A body source over `data`, handing out at most `step` bytes per call.
std::function<Result<size_t>(char*, size_t)> source_over(const std::string& data, size_t step) {
  auto offset = std::make_shared<size_t>(0);
  return [&data, step, offset](char* out, size_t size) -> Result<size_t> {
    size_t n = std::min({size, step, data.size() - *offset});
    std::copy_n(data.data() + *offset, n, out);
    *offset += n;
    return n;
  };
}

Router counting_router() {
  Router router;
  router.add_streaming_body("POST", "/upload", count_body);
  router.add("POST", "/small", [](Request& request) -> Result<Reply> {
    return json_response(200,
                         Json{{"size", request.body.size()}, {"streamed", request.body_reader != nullptr}});
  });
  return router;
}

std::string pattern(size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 7919) >> 3);
  return data;
}

TEST(BodyStream, StreamingRouteReadsBodiesBeyondTheLimitWithLength) {
  auto test = start_server(counting_router(), {.body_limit = 1024});
  std::string data = pattern(3 << 20);
  ClientRequest request{.method = "POST", .target = "/upload"};
  request.body_source = source_over(data, 100'000);
  request.body_length = data.size();
  Result<Response> response = test->client().request(request);
  ASSERT_TRUE(response) << response.error().message();
  ASSERT_EQ(response->status, 200) << response->body;
  Json answer = Json::parse(response->body);
  EXPECT_EQ(answer["size"], data.size());
  EXPECT_EQ(answer["checksum"], std::to_string(checksum_of(data)));
}

TEST(BodyStream, StreamingRouteReadsChunkedBodies) {
  auto test = start_server(counting_router(), {.body_limit = 1024});
  std::string data = pattern(1 << 20);
  ClientRequest request{.method = "POST", .target = "/upload"};
  request.body_source = source_over(data, 33'333);  // no length: chunked
  Result<Response> response = test->client(true).request(request);
  ASSERT_TRUE(response) << response.error().message();
  ASSERT_EQ(response->status, 200) << response->body;
  EXPECT_EQ(Json::parse(response->body)["size"], data.size());
  EXPECT_EQ(Json::parse(response->body)["checksum"], std::to_string(checksum_of(data)));
}

TEST(BodyStream, EmptyBodyReadsAsEnd) {
  auto test = start_server(counting_router());
  Result<Response> response = test->client().request({.method = "POST", .target = "/upload"});
  ASSERT_TRUE(response);
  EXPECT_EQ(Json::parse(response->body)["size"], 0);
}

TEST(BodyStream, OtherRoutesKeepTheirLimitAndBufferedBodies) {
  auto test = start_server(counting_router(), {.body_limit = 1024});
  Result<Response> small = test->client().request({.method = "POST", .target = "/small", .body = "hello"});
  ASSERT_TRUE(small);
  EXPECT_EQ(Json::parse(small->body), (Json{{"size", 5}, {"streamed", false}}));
  Result<Response> big =
      test->client().request({.method = "POST", .target = "/small", .body = std::string(4096, 'x')});
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
}

TEST(BodyStream, HandlerThatAnswersWithoutReadingStillGetsItsAnswerThrough) {
  Router router;
  router.add_streaming_body("POST", "/upload",
                            [](Request&) -> Result<Reply> { return Error::not_found("no such repository"); });
  auto test = start_server(std::move(router));
  std::string data = pattern(200'000);
  ClientRequest request{.method = "POST", .target = "/upload"};
  request.body_source = source_over(data, 50'000);
  request.body_length = data.size();
  Result<Response> response = test->client().request(request);
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(error_from_response(*response).message(), "no such repository");
}

TEST(BodyStream, MalformedChunkedBodyIsAnErrorForTheHandler) {
  std::string seen;
  Router router;
  router.add_streaming_body("POST", "/upload", [&](Request& request) -> Result<Reply> {
    Result<Reply> reply = count_body(request);
    if (!reply) seen = reply.error().message();
    return reply;
  });
  auto test = start_server(std::move(router));
  UniqueFd fd = testing::connect_raw(test->unix_endpoint);
  testing::send_raw(
      fd.get(), "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
  std::string answer = testing::read_until_eof(fd.get());
  EXPECT_NE(answer.find("HTTP/1.1 400"), std::string::npos) << answer;
  EXPECT_NE(seen.find("malformed request body"), std::string::npos) << seen;
}

TEST(BodyStream, ClientLeavingMidBodyIsSeenByTheHandler) {
  std::promise<std::string> seen;
  Router router;
  router.add_streaming_body("POST", "/upload", [&](Request& request) -> Result<Reply> {
    Result<Reply> reply = count_body(request);
    seen.set_value(reply ? "finished" : reply.error().message());
    return reply;
  });
  auto test = start_server(std::move(router));
  {
    UniqueFd fd = testing::connect_raw(test->unix_endpoint);
    testing::send_raw(fd.get(), "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc");
  }
  auto future = seen.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_NE(future.get().find("went away"), std::string::npos);
}

TEST(BodyStream, ClientSourceErrorsAbortTheRequest) {
  auto test = start_server(counting_router());
  ClientRequest request{.method = "POST", .target = "/upload"};
  request.body_source = [](char*, size_t) -> Result<size_t> {
    return Error::invalid_argument("disk on fire");
  };
  Result<Response> response = test->client().request(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().message(), "disk on fire");
}

TEST(BodyStream, RoutesBehindAVersionPrefixStream) {
  Router router;
  router.set_strip_version_prefix(true);
  router.add_streaming_body("POST", "/images/load", count_body);
  EXPECT_TRUE(router.streams_body("POST", "/v1.41/images/load?quiet=1"));
  EXPECT_TRUE(router.streams_body("POST", "/images/load"));
  EXPECT_FALSE(router.streams_body("GET", "/images/load"));
  EXPECT_FALSE(router.streams_body("POST", "/images/json"));
}

}  // namespace
}  // namespace kiln::api::http

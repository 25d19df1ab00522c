// Chunked streaming replies: incremental delivery, disconnect detection, stop() mid-stream.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <future>
#include <thread>

#include "api/http/client.h"
#include "api/http/server.h"
#include "api/http/test_support.h"

namespace kiln::api::http {
namespace {

using namespace std::chrono_literals;
using testing::start_server;

StreamReply text_stream(std::function<void(ChunkWriter&)> body) {
  StreamReply reply{.body = std::move(body)};
  reply.headers.set("Content-Type", "text/plain");
  return reply;
}

TEST(Stream, ChunksReachTheClientAsTheyAreWritten) {
  // The handler only writes "second" after the client saw "first": a buffering server or client deadlocks
  // here until the handler's wait times out, and the test fails.
  std::promise<void> client_saw_first;
  std::atomic<bool> in_order = false;
  Router router;
  router.add("GET", "/events", [&](Request&) -> Result<Reply> {
    return text_stream([&](ChunkWriter& writer) {
      ASSERT_TRUE(writer.write_chunk("first\n"));
      in_order = client_saw_first.get_future().wait_for(5s) == std::future_status::ready;
      ASSERT_TRUE(writer.write_chunk("second\n"));
    });
  });
  auto test = start_server(std::move(router));
  std::string received;
  bool signalled = false;
  Result<Response> response =
      test->client(true).request_stream({.target = "/events"}, [&](std::string_view data) {
        received += data;
        if (!signalled && received.find("first\n") != std::string::npos) {
          signalled = true;
          client_saw_first.set_value();
        }
        return true;
      });
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers.get("transfer-encoding"), "chunked");
  EXPECT_EQ(received, "first\nsecond\n");
  EXPECT_TRUE(in_order);
}

TEST(Stream, KeepAliveContinuesAfterAStream) {
  Router router;
  router.add("GET", "/s", [](Request&) -> Result<Reply> {
    return text_stream([](ChunkWriter& writer) { (void)writer.write_chunk("abc"); });
  });
  auto test = start_server(std::move(router));
  UniqueFd fd = testing::connect_raw(test->unix_endpoint);
  testing::send_raw(fd.get(), "GET /s HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(testing::read_until_contains(fd.get(), "0\r\n\r\n").find("3\r\nabc\r\n"), std::string::npos);
  testing::send_raw(fd.get(), "GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(testing::read_until_eof(fd.get()).find("3\r\nabc\r\n0\r\n\r\n"), std::string::npos);
}

TEST(Stream, HandlerSeesTheClientLeaveByWriteFailure) {
  std::promise<void> noticed;
  Router router;
  router.add("GET", "/logs", [&](Request&) -> Result<Reply> {
    return text_stream([&](ChunkWriter& writer) {
      for (int i = 0; i < 500; ++i) {
        if (!writer.write_chunk("tick\n") || writer.client_gone()) {
          noticed.set_value();
          return;
        }
        std::this_thread::sleep_for(10ms);
      }
    });
  });
  auto test = start_server(std::move(router));
  int chunks = 0;
  Result<Response> response =
      test->client().request_stream({.target = "/logs"}, [&](std::string_view) { return ++chunks < 3; });
  ASSERT_TRUE(response);
  EXPECT_EQ(noticed.get_future().wait_for(5s), std::future_status::ready);
}

TEST(Stream, HandlerSeesTheClientLeaveByPollingItsFd) {
  std::promise<short> woke;
  Router router;
  router.add("GET", "/follow", [&](Request&) -> Result<Reply> {
    return text_stream([&](ChunkWriter& writer) {
      (void)writer.write_chunk("hello\n");
      // What a handler waiting on its own event source does: poll that source and the client together.
      pollfd pfd{.fd = writer.poll_fd(), .events = POLLRDHUP};
      int rc = ::poll(&pfd, 1, 5000);
      woke.set_value(rc > 0 ? pfd.revents : short{0});
      EXPECT_TRUE(writer.client_gone());
    });
  });
  auto test = start_server(std::move(router));
  Result<Response> response =
      test->client().request_stream({.target = "/follow"}, [](std::string_view) { return false; });
  ASSERT_TRUE(response);
  auto future = woke.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_NE(future.get() & (POLLRDHUP | POLLHUP), 0);
}

TEST(Stream, ErrorsBeforeStreamingAreOrdinaryResponses) {
  Router router;
  router.add("GET", "/containers/{id}/logs", [](Request& request) -> Result<Reply> {
    if (request.param("id") != "known") return Error::not_found("no such container");
    return text_stream([](ChunkWriter&) {});
  });
  auto test = start_server(std::move(router));
  bool called = false;
  Result<Response> response =
      test->client().request_stream({.target = "/containers/other/logs"}, [&](std::string_view) {
        called = true;
        return true;
      });
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(error_from_response(*response).message(), "no such container");
  EXPECT_FALSE(called);
}

TEST(Stream, StopEndsAnOpenStreamWithoutHanging) {
  std::promise<void> streaming;
  Router router;
  router.add("GET", "/events", [&](Request&) -> Result<Reply> {
    return text_stream([&](ChunkWriter& writer) {
      streaming.set_value();
      while (writer.write_chunk("event\n"))
        std::this_thread::sleep_for(10ms);  // ignores client_gone on purpose
    });
  });
  auto test = start_server(std::move(router));
  std::thread client([&] {
    (void)test->client().request_stream({.target = "/events"}, [](std::string_view) { return true; });
  });
  ASSERT_EQ(streaming.get_future().wait_for(5s), std::future_status::ready);
  auto start = std::chrono::steady_clock::now();
  test->server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  client.join();
}

}  // namespace
}  // namespace kiln::api::http

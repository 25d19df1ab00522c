// progress_stream over a real server and client: lines in order, the result last, errors before and after
// the stream began, and a client that hangs up cancelling the job.
#include "api/rest/progress_stream.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "api/http/test_support.h"

namespace kiln::api::rest {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<http::testing::TestServer> serve(ProgressJob job) {
  http::Router router;
  router.add("POST", "/job", [job](http::Request&) { return progress_stream(job); });
  return http::testing::start_server(std::move(router));
}

std::vector<Json> lines_of(const std::string& body) {
  std::vector<Json> lines;
  size_t start = 0;
  for (size_t end; (end = body.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(Json::parse(body.substr(start, end - start)));
  EXPECT_EQ(start, body.size()) << "every line ends with a newline";
  return lines;
}

TEST(ProgressStream, LinesInOrderThenTheResult) {
  auto test = serve([](image::ProgressListener& progress) -> Result<Json> {
    progress.on_message("1: Pulling from library/busybox");
    progress.on_progress(
        {.id = "abc", .state = image::ProgressState::kDownloading, .current = 5, .total = 10});
    progress.on_progress(
        {.id = "abc", .state = image::ProgressState::kDownloaded, .current = 10, .total = 10});
    return Json{{"ID", "sha256:1"}};
  });
  auto response = test->client().request({.method = "POST", .target = "/job"});
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers.get("Content-Type"), "application/json");
  auto lines = lines_of(response->body);
  ASSERT_EQ(lines.size(), 4u) << response->body;
  EXPECT_EQ(lines[0], (Json{{"status", "1: Pulling from library/busybox"}}));
  EXPECT_EQ(
      lines[1],
      (Json{{"status", "Downloading"}, {"id", "abc"}, {"progressDetail", {{"current", 5}, {"total", 10}}}}));
  EXPECT_EQ(lines[2]["status"], "Pull complete");
  EXPECT_EQ(lines[3], (Json{{"aux", {{"ID", "sha256:1"}}}}));
}

TEST(ProgressStream, FailureBeforeAnyProgressIsAnOrdinaryErrorResponse) {
  auto test =
      serve([](image::ProgressListener&) -> Result<Json> { return Error::not_found("manifest unknown"); });
  auto response = test->client().request({.method = "POST", .target = "/job"});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(Json::parse(response->body), (Json{{"message", "manifest unknown"}}));
}

TEST(ProgressStream, FailureAfterTheStreamBeganIsTheLastLine) {
  auto test = serve([](image::ProgressListener& progress) -> Result<Json> {
    progress.on_message("working");
    return Error::protocol("digest mismatch");
  });
  auto response = test->client().request({.method = "POST", .target = "/job"});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  auto lines = lines_of(response->body);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1],
            (Json{{"error", "digest mismatch"}, {"errorDetail", {{"message", "digest mismatch"}}}}));
}

TEST(ProgressStream, TransferUpdatesAreThrottledButStateChangesAreNot) {
  auto test = serve([](image::ProgressListener& progress) -> Result<Json> {
    for (uint64_t i = 1; i <= 1000; ++i)
      progress.on_progress(
          {.id = "l", .state = image::ProgressState::kDownloading, .current = i, .total = 1000});
    progress.on_progress(
        {.id = "l", .state = image::ProgressState::kVerifying, .current = 1000, .total = 1000});
    return Json();
  });
  auto response = test->client().request({.method = "POST", .target = "/job"});
  ASSERT_TRUE(response);
  auto lines = lines_of(response->body);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_LT(lines.size(), 100u) << "a thousand byte counts in a burst are not a thousand lines";
  EXPECT_EQ(lines[lines.size() - 2]["progressDetail"]["current"],
            1000);  // the complete count always goes out
  EXPECT_EQ(lines.back()["status"], "Verifying");
}

TEST(ProgressStream, ClientHangingUpCancelsTheJob) {
  std::promise<bool> saw_cancel;
  auto test = serve([&](image::ProgressListener& progress) -> Result<Json> {
    progress.on_message("started");
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!progress.cancelled() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);  // a stand-in for a long download checking between chunks
    saw_cancel.set_value(progress.cancelled());
    return Error::cancelled("the pull was cancelled");
  });
  auto response = test->client().request_stream({.method = "POST", .target = "/job"},
                                                [](std::string_view) { return false; });  // hang up
  ASSERT_TRUE(response) << response.error().message();
  auto future = saw_cancel.get_future();
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(future.get());
}

}  // namespace
}  // namespace kiln::api::rest

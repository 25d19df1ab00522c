#include <gtest/gtest.h>

#include "api/docker/docker_api.h"
#include "common/temp_dir.h"

namespace kiln::api::docker {
namespace {

class DockerRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("docker-routes-").value());
    images_ = image::ImageStore::open({.root = dir_->path()}).value();
    context_ = std::make_unique<DockerContext>(DockerContext{.images = *images_,
                                                             .events = events_,
                                                             .scratch_dir = dir_->path(),
                                                             .root = dir_->path(),
                                                             .engine_name = "qemu",
                                                             .accelerator = "tcg",
                                                             .guest_kernel_release = "6.1.158",
                                                             .daemon_id = "test-id",
                                                             .host_cpus = 2,
                                                             .host_memory_bytes = 1 << 30});
    router_ = std::make_unique<http::Router>(make_docker_router(*context_));
  }

  http::Response call(std::string method, std::string target) {
    http::Reply reply = dispatch(std::move(target), std::move(method));
    EXPECT_TRUE(std::holds_alternative<http::Response>(reply));
    return std::get<http::Response>(std::move(reply));
  }

  static std::string message_of(const http::Response& response) {
    return parse_json(response.body).value().value("message", "");
  }

  // Runs a streamed answer to its end, collecting what it wrote.
  static std::string drain(http::Reply reply) {
    struct Collect : http::ChunkWriter {
      std::string text;
      Result<void> write_chunk(std::string_view data) override {
        text += data;
        return ok();
      }
      bool client_gone() const override { return false; }
      int poll_fd() const override { return -1; }
    } collect;
    EXPECT_TRUE(std::holds_alternative<http::StreamReply>(reply));
    std::get<http::StreamReply>(reply).body(collect);
    return collect.text;
  }

  http::Reply dispatch(std::string target, std::string method = "GET") {
    http::Request request;
    request.method = std::move(method);
    request.target = target;
    size_t question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string::npos)
      request.query = http::QueryParams::parse(target.substr(question + 1)).value();
    return router_->dispatch(request);
  }

  daemon::EventBus events_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<DockerContext> context_;
  std::unique_ptr<http::Router> router_;
};

TEST_F(DockerRoutesTest, PingAnswersWithTheHeadersClientsNegotiateFrom) {
  auto get = call("GET", "/_ping");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, "OK");
  EXPECT_EQ(get.headers.get("API-Version"), kApiVersion);
  EXPECT_EQ(get.headers.get("OSType"), "linux");
  EXPECT_EQ(get.headers.get("Docker-Experimental"), "false");
  auto head = call("HEAD", "/v1.41/_ping");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(head.headers.get("API-Version"), kApiVersion);
}

TEST_F(DockerRoutesTest, VersionsOutsideTheRangeAreRefusedInDockerdsWords) {
  auto too_new = call("GET", "/v1.99/version");
  EXPECT_EQ(too_new.status, 400);
  EXPECT_EQ(message_of(too_new), "client version 1.99 is too new. Maximum supported API version is 1.43");
  auto too_old = call("GET", "/v1.12/version");
  EXPECT_EQ(too_old.status, 400);
  EXPECT_EQ(
      message_of(too_old),
      "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to "
      "a newer version");
  EXPECT_EQ(call("GET", "/v1.24/version").status, 200);
  EXPECT_EQ(call("GET", "/v1.43/version").status, 200);
}

TEST_F(DockerRoutesTest, VersionAndInfoDescribeKiln) {
  auto version = parse_json(call("GET", "/v1.43/version").body).value();
  EXPECT_EQ(version["ApiVersion"], kApiVersion);
  EXPECT_EQ(version["MinAPIVersion"], kMinApiVersion);
  EXPECT_EQ(version["KernelVersion"], "6.1.158");
  auto info = parse_json(call("GET", "/info").body).value();
  EXPECT_EQ(info["Images"], 0);
  EXPECT_EQ(info["NCPU"], 2);
  EXPECT_EQ(info["DefaultRuntime"], "kiln-vm");
  EXPECT_TRUE(info["Runtimes"].contains("kiln-vm"));
  EXPECT_EQ(info["ID"], "test-id");
}

TEST_F(DockerRoutesTest, UnknownImagesAndPathsAreDockerErrors) {
  auto inspect = call("GET", "/v1.43/images/nosuch/json");
  EXPECT_EQ(inspect.status, 404);
  EXPECT_EQ(message_of(inspect), "No such image: nosuch:latest");
  auto remove = call("DELETE", "/images/nosuch:1");
  EXPECT_EQ(remove.status, 404);
  EXPECT_EQ(message_of(remove), "No such image: nosuch:1");
  auto unknown = call("GET", "/v1.43/nothing/here");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(message_of(unknown).find("page not found"), std::string::npos);
  EXPECT_EQ(call("GET", "/images/json").body, "[]\n");
  auto bad_filter = call("GET", "/images/json?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D");
  EXPECT_EQ(bad_filter.status, 400);
  EXPECT_EQ(message_of(bad_filter), "invalid filter 'colour'");
  EXPECT_EQ(call("POST", "/images/nosuch/tag?repo=x&tag=1").status, 404);
  EXPECT_EQ(call("POST", "/images/nosuch/tag?repo=&tag=1").status, 400);
  EXPECT_EQ(call("GET", "/images/search?term=busybox").body, "[]\n");
}

TEST_F(DockerRoutesTest, EventsReplayImageEventsInDockersShapeFilteredAndBounded) {
  events_.publish(
      {.type = "vm", .action = "started", .id = "vm1", .name = "web"});  // Kiln's own, not Docker's
  events_.publish({.type = "image",
                   .action = "pull",
                   .id = "busybox:latest",
                   .name = "busybox:latest",
                   .attributes = {{"name", "busybox:latest"}}});
  events_.publish({.type = "image",
                   .action = "tag",
                   .id = "sha256:abc",
                   .name = "mine:v1",
                   .attributes = {{"name", "mine:v1"}}});
  std::string until = std::to_string(std::time(nullptr) + 1);
  std::string all = drain(dispatch("/v1.43/events?since=0&until=" + until));
  std::vector<Json> lines;
  for (size_t start = 0, end; (end = all.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(parse_json(all.substr(start, end - start)).value());
  ASSERT_EQ(lines.size(), 2u) << all;
  EXPECT_EQ(lines[0]["Type"], "image");
  EXPECT_EQ(lines[0]["Action"], "pull");
  EXPECT_EQ(lines[0]["status"], "pull");
  EXPECT_EQ(lines[0]["Actor"]["ID"], "busybox:latest");
  EXPECT_EQ(lines[0]["scope"], "local");
  EXPECT_GT(lines[0]["timeNano"].get<int64_t>(), 0);
  EXPECT_EQ(lines[0]["time"].get<int64_t>(), lines[0]["timeNano"].get<int64_t>() / 1'000'000'000);

  // {"event":["tag"]} and {"image":["mine"]}: the tag event alone (an image filter matches without the tag).
  std::string tags =
      drain(dispatch("/events?since=0&until=" + until + "&filters=%7B%22event%22%3A%5B%22tag%22%5D%7D"));
  EXPECT_NE(tags.find("\"Action\":\"tag\""), std::string::npos);
  EXPECT_EQ(tags.find("\"pull\""), std::string::npos);
  std::string mine =
      drain(dispatch("/events?since=0&until=" + until + "&filters=%7B%22image%22%3A%5B%22mine%22%5D%7D"));
  EXPECT_NE(mine.find("mine:v1"), std::string::npos);
  EXPECT_EQ(mine.find("busybox"), std::string::npos);

  auto bad = dispatch("/events?since=yesterday");
  ASSERT_TRUE(std::holds_alternative<http::Response>(bad));
  EXPECT_EQ(std::get<http::Response>(bad).status, 400);
}

}  // namespace
}  // namespace kiln::api::docker

#include <gtest/gtest.h>

#include <fstream>

#include "api/docker/docker_api.h"
#include "common/encoding.h"
#include "common/rfc3339.h"
#include "common/stdcopy.h"
#include "common/temp_dir.h"
#include "daemon/containers/test_support.h"

namespace kiln::api::docker {
namespace {

class DockerRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stack_ = daemon::containers::testing::ContainerStack::create().value();
    context_ = std::make_unique<DockerContext>(DockerContext{.images = stack_->images(),
                                                             .containers = stack_->containers(),
                                                             .volumes = stack_->volumes(),
                                                             .events = stack_->events(),
                                                             .scratch_dir = stack_->dir(),
                                                             .root = stack_->dir(),
                                                             .engine_name = "qemu",
                                                             .accelerator = "tcg",
                                                             .guest_kernel_release = "6.1.158",
                                                             .daemon_id = "test-id",
                                                             .host_cpus = 2,
                                                             .host_memory_bytes = 1 << 30});
    router_ = std::make_unique<http::Router>(make_docker_router(*context_));
  }

  http::Response call(std::string method, std::string target, std::string body = {}) {
    http::Reply reply = dispatch(std::move(target), std::move(method), std::move(body));
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

  http::Reply dispatch(std::string target, std::string method = "GET", std::string body = {}) {
    http::Request request;
    request.method = std::move(method);
    request.body = std::move(body);
    request.target = target;
    size_t question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string::npos)
      request.query = http::QueryParams::parse(target.substr(question + 1)).value();
    return router_->dispatch(request);
  }

  std::unique_ptr<daemon::containers::testing::ContainerStack> stack_;
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
  EXPECT_EQ(info["Images"], 1);  // the stack's test image
  EXPECT_EQ(info["NCPU"], 2);
  EXPECT_EQ(info["DefaultRuntime"], "kiln-vm");
  EXPECT_TRUE(info["Runtimes"].contains("kiln-vm"));
  EXPECT_EQ(info["ID"], "test-id");
  EXPECT_EQ(info["Plugins"]["Volume"].dump(), R"(["local"])");
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
  EXPECT_NE(call("GET", "/images/json").body.find("test:latest"), std::string::npos);
  auto bad_filter = call("GET", "/images/json?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D");
  EXPECT_EQ(bad_filter.status, 400);
  EXPECT_EQ(message_of(bad_filter), "invalid filter 'colour'");
  EXPECT_EQ(call("POST", "/images/nosuch/tag?repo=x&tag=1").status, 404);
  EXPECT_EQ(call("POST", "/images/nosuch/tag?repo=&tag=1").status, 400);
  EXPECT_EQ(call("GET", "/images/search?term=busybox").body, "[]\n");
}

TEST_F(DockerRoutesTest, EventsReplayImageEventsInDockersShapeFilteredAndBounded) {
  stack_->events().publish(
      {.type = "vm", .action = "started", .id = "vm1", .name = "web"});  // Kiln's own, not Docker's
  stack_->events().publish({.type = "image",
                            .action = "pull",
                            .id = "busybox:latest",
                            .name = "busybox:latest",
                            .attributes = {{"name", "busybox:latest"}}});
  stack_->events().publish({.type = "image",
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

TEST_F(DockerRoutesTest, ContainerRunsThroughCreateStartWaitLogsAndRemove) {
  auto created = call("POST", "/v1.43/containers/create?name=hello",
                      R"({"Image":"test","Cmd":["echo","hi"],"Labels":{"team":"a"},"Unknown":1})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = parse_json(created.body).value()["Id"];
  EXPECT_EQ(id.size(), 64U);
  auto inspect = parse_json(call("GET", "/containers/hello/json").body).value();
  EXPECT_EQ(inspect["Name"], "/hello");
  EXPECT_EQ(inspect["State"]["Status"], "created");
  EXPECT_EQ(inspect["Config"]["Labels"]["team"], "a");
  EXPECT_EQ(call("POST", "/containers/hello/start").status, 204);
  std::string waited = drain(dispatch("/containers/hello/wait", "POST"));
  EXPECT_EQ(parse_json(waited).value()["StatusCode"], 0) << waited;
  EXPECT_EQ(drain(dispatch("/containers/hello/logs?stdout=1&stderr=1")),
            stdcopy::frame(stdcopy::kStdout, "hi\n"));
  auto logs_without_streams = call("GET", "/containers/hello/logs");
  EXPECT_EQ(logs_without_streams.status, 400);
  auto listed = parse_json(call("GET", "/containers/json?all=1").body).value();
  ASSERT_EQ(listed.size(), 1U);
  EXPECT_EQ(listed[0]["Names"][0], "/hello");
  EXPECT_EQ(listed[0]["State"], "exited");
  EXPECT_EQ(parse_json(call("GET", "/containers/json").body).value().size(), 0U);  // running only
  EXPECT_EQ(call("POST", "/containers/hello/stop").status, 304);
  EXPECT_EQ(call("DELETE", "/containers/hello").status, 204);
  EXPECT_EQ(call("GET", "/containers/hello/json").status, 404);
}

TEST_F(DockerRoutesTest, AnImageInUseByAContainerIsKept) {
  ASSERT_EQ(call("POST", "/containers/create?name=user", R"({"Image":"test","Cmd":["true"]})").status, 201);
  auto refused = call("DELETE", "/images/test");
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(message_of(refused).find("(must force) - container"), std::string::npos) << refused.body;
  EXPECT_EQ(call("DELETE", "/images/test?force=1").status, 409);
  // Another tag of it can go; once the container is gone, so can the image.
  ASSERT_EQ(call("POST", "/images/test/tag?repo=other&tag=1").status, 201);
  EXPECT_EQ(call("DELETE", "/images/other:1").status, 200);
  ASSERT_EQ(call("DELETE", "/containers/user").status, 204);
  EXPECT_EQ(call("DELETE", "/images/test").status, 200);
}

TEST_F(DockerRoutesTest, UpdateResizesAStoppedContainersVmAndChangesTheRestartPolicy) {
  ASSERT_EQ(call("POST", "/containers/create?name=sized", R"({"Image":"test","Cmd":["true"]})").status, 201);
  auto updated = call(
      "POST", "/containers/sized/update",
      R"({"Memory":268435456,"NanoCpus":2000000000,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}})");
  ASSERT_EQ(updated.status, 200) << updated.body;
  auto inspect = parse_json(call("GET", "/containers/sized/json").body).value();
  EXPECT_EQ(inspect["HostConfig"]["Memory"], 268435456);
  EXPECT_EQ(inspect["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
  EXPECT_EQ(inspect["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
  auto vm = stack_->vms().inspect(stack_->containers().inspect("sized")->vm_id).value();
  EXPECT_EQ(vm.memory_mib, 256U);
  EXPECT_EQ(vm.cpus, 2U);
  EXPECT_EQ(call("POST", "/containers/sized/update", R"({"Memory":"lots"})").status, 400);
  EXPECT_EQ(call("POST", "/containers/nosuch/update", R"({})").status, 404);
}

TEST_F(DockerRoutesTest, ContainerErrorsAreDockers) {
  auto missing = call("GET", "/containers/nosuch/json");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(message_of(missing), "No such container: nosuch");
  EXPECT_EQ(call("POST", "/containers/create", "{not json").status, 400);
  auto wrong_type = call("POST", "/containers/create", R"({"Image":"test","Cmd":7})");
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_NE(message_of(wrong_type).find("cannot unmarshal"), std::string::npos);
  auto no_image = call("POST", "/containers/create", R"({"Image":"nosuch","Cmd":["true"]})");
  EXPECT_EQ(no_image.status, 404);
  EXPECT_EQ(message_of(no_image), "No such image: nosuch:latest");
  auto bad_name = call("POST", "/containers/create?name=a%20b", R"({"Image":"test","Cmd":["true"]})");
  EXPECT_EQ(bad_name.status, 400);
  ASSERT_EQ(call("POST", "/containers/create?name=dup", R"({"Image":"test","Cmd":["true"]})").status, 201);
  auto clash = call("POST", "/containers/create?name=dup", R"({"Image":"test","Cmd":["true"]})");
  EXPECT_EQ(clash.status, 409);
  EXPECT_NE(message_of(clash).find("is already in use by container"), std::string::npos);
  auto not_found_cmd = call("POST", "/containers/create?name=nf", R"({"Image":"test","Cmd":["nosuch"]})");
  ASSERT_EQ(not_found_cmd.status, 201);
  auto start = call("POST", "/containers/nf/start");
  EXPECT_EQ(start.status, 400);
  EXPECT_NE(message_of(start).find("executable file not found"), std::string::npos);
  EXPECT_EQ(parse_json(call("GET", "/containers/nf/json").body).value()["State"]["ExitCode"], 127);
  EXPECT_EQ(call("POST", "/containers/dup/kill").status, 409);
  EXPECT_EQ(call("POST", "/containers/dup/pause").status, 409);
  EXPECT_EQ(call("POST", "/containers/dup/wait?condition=sometime").status, 400);
  EXPECT_EQ(call("POST", "/containers/dup/kill?signal=SIGFLY").status, 400);
}

// ---- volumes --------------------------------------------------------------------------------------------

TEST_F(DockerRoutesTest, VolumesAreCreatedInspectedListedAndRemovedInDockerdsShapes) {
  auto created = call("POST", "/v1.43/volumes/create", R"({"Name":"data","Labels":{"team":"a","empty":""}})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto volume = parse_json(created.body).value();
  EXPECT_EQ(volume["Name"], "data");
  EXPECT_EQ(volume["Driver"], "local");
  EXPECT_EQ(volume["Scope"], "local");
  EXPECT_EQ(volume["Labels"], (Json{{"team", "a"}, {"empty", ""}}));
  EXPECT_TRUE(volume["Options"].is_null());
  EXPECT_EQ(volume["Mountpoint"], stack_->dir() + "/root/volumes/data/_data");
  EXPECT_TRUE(parse_rfc3339(volume["CreatedAt"].get<std::string>()).has_value());
  EXPECT_FALSE(volume.contains("UsageData"));
  // The same name again (lower-case keys, as Go accepts them): the volume as it was, 201 again.
  auto again = call("POST", "/volumes/create", R"({"name":"data","labels":{"other":"1"}})");
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(parse_json(again.body).value()["Labels"], volume["Labels"]);
  ASSERT_EQ(call("POST", "/volumes/create", R"({"Name":"plain"})").status, 201);
  EXPECT_TRUE(parse_json(call("GET", "/volumes/plain").body).value()["Labels"].is_null());
  // Empty maps, as the 20.10 CLI sends them, come back empty rather than null (dockerd keeps them apart).
  auto empty = call("POST", "/volumes/create", R"({"Name":"empty-maps","Labels":{},"DriverOpts":{}})");
  ASSERT_EQ(empty.status, 201) << empty.body;
  EXPECT_EQ(parse_json(empty.body).value()["Labels"], Json::object());
  EXPECT_EQ(parse_json(empty.body).value()["Options"], Json::object());
  ASSERT_EQ(call("DELETE", "/volumes/empty-maps").status, 204);

  auto inspect = call("GET", "/v1.41/volumes/data");
  EXPECT_EQ(inspect.status, 200);
  EXPECT_EQ(parse_json(inspect.body).value(), volume);
  auto listed = parse_json(call("GET", "/volumes").body).value();
  EXPECT_TRUE(listed["Warnings"].is_null());
  ASSERT_EQ(listed["Volumes"].size(), 2U);
  EXPECT_EQ(listed["Volumes"][0], volume);

  auto names = [&](const std::string& filters) {
    auto response = call("GET", "/volumes?filters=" + filters);
    EXPECT_EQ(response.status, 200) << response.body;
    std::vector<std::string> out;
    Json listed = parse_json(response.body).value();
    for (const auto& v : listed["Volumes"]) out.push_back(v["Name"]);
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names("%7B%22name%22%3A%5B%22at%22%5D%7D"), Names{"data"});            // {"name":["at"]}
  EXPECT_EQ(names("%7B%22name%22%3A%7B%22%5Ep%22%3Atrue%7D%7D"), Names{"plain"});  // {"name":{"^p":true}}
  EXPECT_EQ(names("%7B%22label%22%3A%5B%22team%22%5D%7D"), Names{"data"});         // {"label":["team"]}
  EXPECT_EQ(names("%7B%22label%22%3A%5B%22team%3Da%22%5D%7D"), Names{"data"});     // team=a
  EXPECT_EQ(names("%7B%22label%22%3A%5B%22team%3Db%22%5D%7D"), Names{});           // team=b
  EXPECT_EQ(names("%7B%22label%22%3A%5B%22empty%3D%22%5D%7D"), Names{"data"});     // empty=
  EXPECT_EQ(names("%7B%22driver%22%3A%5B%22local%22%5D%7D").size(), 2U);
  EXPECT_EQ(names("%7B%22driver%22%3A%5B%22loc%22%5D%7D"), Names{});
  EXPECT_EQ(call("GET", "/volumes?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D").status, 400);
  EXPECT_EQ(call("GET", "/volumes?filters=%7B%22dangling%22%3A%5B%22x%22%5D%7D").status, 400);

  EXPECT_EQ(call("DELETE", "/volumes/data").status, 204);
  auto gone = call("GET", "/volumes/data");
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(message_of(gone), "get data: no such volume");
  auto remove_missing = call("DELETE", "/volumes/data");
  EXPECT_EQ(remove_missing.status, 404);
  EXPECT_EQ(message_of(remove_missing), "get data: no such volume");
  EXPECT_EQ(call("DELETE", "/volumes/data?force=1").status, 204);
  EXPECT_EQ(call("GET", "/volumes/a%2Fb").status, 404);
}

TEST_F(DockerRoutesTest, VolumeCreateErrorsAreDockerds) {
  auto expect_error = [&](const std::string& body, int status, const std::string& message) {
    auto response = call("POST", "/volumes/create", body);
    EXPECT_EQ(response.status, status) << body;
    EXPECT_EQ(message_of(response), message) << body;
  };
  expect_error(
      R"({"Name":"a/b"})", 400,
      "create a/b: \"a/b\" includes invalid characters for a local volume name, only "
      "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute "
      "path");
  expect_error(R"({"Name":"a"})", 400,
               "create a: volume name is too short, names should be at least two alphanumeric characters");
  expect_error(R"({"Name":"v1","Driver":"foo"})", 404,
               "create v1: error looking up volume plugin foo: plugin \"foo\" not found");
  expect_error(R"("x")", 400, "json: cannot unmarshal string into Go value of type volume.VolumeCreateBody");
  expect_error(R"([])", 400, "json: cannot unmarshal array into Go value of type volume.VolumeCreateBody");
  expect_error(R"({"Name":5})", 400,
               "json: cannot unmarshal number into Go struct field VolumeCreateBody.Name of type string");
  expect_error(R"({"Labels":["a"]})", 400,
               "json: cannot unmarshal array into Go struct field VolumeCreateBody.Labels of type "
               "map[string]string");
  expect_error(R"({"Labels":{"a":5}})", 400,
               "json: cannot unmarshal number into Go struct field VolumeCreateBody.Labels of type string");
  expect_error("", 400, "got EOF while reading request body");
  auto options = call("POST", "/volumes/create", R"({"Name":"v2","DriverOpts":{"type":"tmpfs"}})");
  EXPECT_EQ(options.status, 400);
  EXPECT_NE(message_of(options).find("driver options are not supported"), std::string::npos);
  EXPECT_EQ(call("POST", "/volumes/create", "{not json").status, 400);
  EXPECT_EQ(parse_json(call("GET", "/volumes").body).value()["Volumes"].size(), 0U);  // nothing was made
  // null is an empty body to Go: a volume with a generated name.
  auto generated = call("POST", "/volumes/create", "null");
  EXPECT_EQ(generated.status, 201);
  EXPECT_EQ(parse_json(generated.body).value()["Name"].get<std::string>().size(), 64U);
}

TEST_F(DockerRoutesTest, AVolumeInUseIsKeptAndCountedAsDockerdCountsIt) {
  ASSERT_EQ(call("POST", "/volumes/create", R"({"Name":"used"})").status, 201);
  ASSERT_EQ(call("POST", "/volumes/create", R"({"Name":"free"})").status, 201);
  std::ofstream(stack_->volumes().data_path("used") + "/file") << std::string(300, 'x');
  stack_->volumes().set_users([] { return daemon::volumes::VolumeUsers{{"used", {"c1"}}}; });
  auto refused = call("DELETE", "/volumes/used?force=1");
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(message_of(refused), "remove used: volume is in use - [c1]");

  auto names = [&](const std::string& dangling) {
    std::vector<std::string> out;
    auto body = call("GET", "/volumes?filters=%7B%22dangling%22%3A%5B%22" + dangling + "%22%5D%7D").body;
    Json listed = parse_json(body).value();
    for (const auto& v : listed["Volumes"]) out.push_back(v["Name"]);
    return out;
  };
  EXPECT_EQ(names("true"), std::vector<std::string>{"free"});
  EXPECT_EQ(names("false"), std::vector<std::string>{"used"});

  auto df = parse_json(call("GET", "/system/df").body).value();
  ASSERT_EQ(df["Volumes"].size(), 2U);
  EXPECT_EQ(df["Volumes"][0]["Name"], "used");
  EXPECT_EQ(df["Volumes"][0]["UsageData"], (Json{{"RefCount", 1}, {"Size", 300}}));
  EXPECT_EQ(df["Volumes"][1]["UsageData"], (Json{{"RefCount", 0}, {"Size", 0}}));
}

TEST_F(DockerRoutesTest, PruneTakesEveryUnusedVolumeBeforeApi142AndOnlyAnonymousOnesFrom142) {
  auto make = [&](const std::string& body) {
    auto created = call("POST", "/volumes/create", body);
    EXPECT_EQ(created.status, 201) << created.body;
    return parse_json(created.body).value()["Name"].get<std::string>();
  };
  auto pruned = [&](const std::string& target) {
    auto response = call("POST", target);
    EXPECT_EQ(response.status, 200) << response.body;
    auto body = parse_json(response.body).value();
    EXPECT_TRUE(body["SpaceReclaimed"].is_number());
    std::vector<std::string> out = body["VolumesDeleted"];
    std::sort(out.begin(), out.end());
    return out;
  };
  using Names = std::vector<std::string>;
  std::string anonymous = make("{}");
  EXPECT_EQ(parse_json(call("GET", "/volumes/" + anonymous).body).value()["Labels"],
            (Json{{"com.docker.volume.anonymous", ""}}));
  make(R"({"Name":"named"})");
  make(R"({"Name":"kept","Labels":{"keep":"1"}})");
  make(R"({"Name":"used"})");
  stack_->volumes().set_users([] { return daemon::volumes::VolumeUsers{{"used", {"c1"}}}; });

  EXPECT_EQ(pruned("/v1.43/volumes/prune"), Names{anonymous});
  EXPECT_EQ(pruned("/volumes/prune"), Names{});  // no version: the newest's rule
  // {"label!":["keep"]}, with {"all":["true"]} from 1.42 on; before 1.42 "all" is no filter at all.
  EXPECT_EQ(call("POST", "/v1.41/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D").status, 400);
  EXPECT_EQ(pruned("/v1.43/volumes/"
                   "prune?filters=%7B%22all%22%3A%5B%22true%22%5D%2C%22label%21%22%3A%5B%22keep%22%5D%7D"),
            Names{"named"});
  EXPECT_EQ(pruned("/v1.41/volumes/prune?filters=%7B%22label%22%3A%5B%22keep%3D2%22%5D%7D"), Names{});
  EXPECT_EQ(pruned("/v1.41/volumes/prune?filters=%7B%22label%22%3A%5B%22keep%3D1%22%5D%7D"), Names{"kept"});
  EXPECT_EQ(call("POST", "/volumes/prune?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D").status, 400);
  auto left = parse_json(call("GET", "/volumes").body).value()["Volumes"];
  ASSERT_EQ(left.size(), 1U);
  EXPECT_EQ(left[0]["Name"], "used");
}

TEST_F(DockerRoutesTest, VolumeEventsAreStreamedInDockerdsShape) {
  ASSERT_EQ(call("POST", "/volumes/create", R"({"Name":"evented"})").status, 201);
  ASSERT_EQ(call("DELETE", "/volumes/evented").status, 204);
  std::string until = std::to_string(std::time(nullptr) + 1);
  std::string all =
      drain(dispatch("/events?since=0&until=" + until + "&filters=%7B%22type%22%3A%5B%22volume%22%5D%7D"));
  std::vector<Json> lines;
  for (size_t start = 0, end; (end = all.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(parse_json(all.substr(start, end - start)).value());
  ASSERT_EQ(lines.size(), 2U) << all;
  EXPECT_EQ(lines[0]["Type"], "volume");
  EXPECT_EQ(lines[0]["Action"], "create");
  EXPECT_EQ(lines[0]["Actor"], (Json{{"ID", "evented"}, {"Attributes", {{"driver", "local"}}}}));
  EXPECT_FALSE(lines[0].contains("status"));  // dockerd's legacy fields are for containers and images
  EXPECT_FALSE(lines[0].contains("id"));
  EXPECT_EQ(lines[1]["Action"], "destroy");
}

TEST_F(DockerRoutesTest, FilesOfAStoppedContainerComeFromItsVmStartedForThem) {
  ASSERT_EQ(call("POST", "/containers/create?name=files", R"({"Image":"test","Cmd":["true"]})").status, 201);
  std::string vm_id = stack_->containers().inspect("files")->vm_id;
  auto stat = call("HEAD", "/containers/files/archive?path=/etc/hostname");
  ASSERT_EQ(stat.status, 200) << stat.body;
  std::string header(stat.headers.get("X-Docker-Container-Path-Stat").value_or(""));
  EXPECT_EQ(base64_decode(header).value(),
            R"({"name":"hostname","size":6,"mode":420,"mtime":"2024-01-01T00:00:00Z","linkTarget":""})");
  // The VM ran for the stat only: stopped again, and the container never ran.
  EXPECT_EQ(stack_->vms().inspect(vm_id)->state, daemon::VmState::kStopped);
  auto inspect = parse_json(call("GET", "/containers/files/json").body).value();
  EXPECT_EQ(inspect["State"]["Status"], "created");

  auto missing = call("GET", "/containers/files/archive?path=/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(message_of(missing), "Could not find the file /nope in container files");
  auto no_path = call("GET", "/containers/files/archive");
  EXPECT_EQ(no_path.status, 400);
  EXPECT_EQ(message_of(no_path), "bad parameter: pathcannot be empty");
  auto no_container = call("GET", "/containers/nosuch/archive?path=/etc");
  EXPECT_EQ(no_container.status, 404);
  EXPECT_EQ(message_of(no_container), "No such container: nosuch");

  http::Reply archive = dispatch("/containers/files/archive?path=/etc/hostname");
  ASSERT_TRUE(std::holds_alternative<http::StreamReply>(archive));
  const auto& headers = std::get<http::StreamReply>(archive).headers;
  EXPECT_EQ(headers.get("Content-Type").value_or(""), "application/x-tar");
  EXPECT_EQ(std::string(headers.get("X-Docker-Container-Path-Stat").value_or("")), header);
  EXPECT_EQ(drain(std::move(archive)), "tar of /etc/hostname");
  EXPECT_EQ(drain(dispatch("/containers/files/export")), "tar of the root");

  auto put = call("PUT", "/containers/files/archive?path=/tmp", "not read by the fake");
  EXPECT_EQ(put.status, 200) << put.body;
  auto into_file = call("PUT", "/containers/files/archive?path=/etc/hostname", "x");
  EXPECT_EQ(into_file.status, 500);
  EXPECT_EQ(message_of(into_file), "extraction point is not a directory");

  auto changes = call("GET", "/containers/files/changes");
  ASSERT_EQ(changes.status, 200);
  EXPECT_EQ(parse_json(changes.body).value(),
            parse_json(R"([{"Path":"/etc","Kind":0},{"Path":"/etc/new","Kind":1},{"Path":"/old","Kind":2}])")
                .value());
  EXPECT_EQ(stack_->vms().inspect(vm_id)->state, daemon::VmState::kStopped);
  EXPECT_EQ(parse_json(call("GET", "/containers/files/json").body).value()["State"]["Status"], "created");
  // Nothing of this counts as a run: starting it is the first.
  EXPECT_EQ(call("POST", "/containers/files/start").status, 204);
}

TEST_F(DockerRoutesTest, CommitMakesAnImageWithTheChangesApplied) {
  ASSERT_EQ(
      call("POST", "/containers/create?name=base", R"({"Image":"test","Cmd":["echo","hi"],"Env":["A=1"]})")
          .status,
      201);
  auto committed =
      call("POST",
           "/commit?container=base&repo=committed&tag=v1&comment=why&author=me&changes=CMD%20%5B%22true%22%5D"
           "&changes=ENV%20B%3D2&changes=WORKDIR%20/srv",
           "{}");
  ASSERT_EQ(committed.status, 201) << committed.body;
  std::string id = parse_json(committed.body).value()["Id"];
  EXPECT_TRUE(id.starts_with("sha256:"));
  EXPECT_EQ(stack_->images().resolve("committed:v1").value().to_string(), id);
  auto config = parse_json(call("GET", "/images/committed:v1/json").body).value();
  EXPECT_EQ(config["Config"]["Cmd"], Json::array({"true"}));
  EXPECT_EQ(config["Config"]["WorkingDir"], "/srv");
  auto env = config["Config"]["Env"].dump();
  EXPECT_NE(env.find("A=1"), std::string::npos) << env;
  EXPECT_NE(env.find("B=2"), std::string::npos) << env;
  // A container of the new image takes its config.
  ASSERT_EQ(call("POST", "/containers/create?name=child", R"({"Image":"committed:v1"})").status, 201);
  EXPECT_EQ(parse_json(call("GET", "/containers/child/json").body).value()["Config"]["Cmd"],
            Json::array({"true"}));

  auto bad_change = call("POST", "/commit?container=base&changes=RUN%20true", "");
  EXPECT_EQ(bad_change.status, 400);
  EXPECT_EQ(message_of(bad_change), "RUN is not a valid change command");
  auto missing = call("POST", "/commit?container=nosuch", "");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(message_of(missing), "No such container: nosuch");
}

}  // namespace
}  // namespace kiln::api::docker

#include "api/rest/vm_json.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace kiln::api::rest {
namespace {

Json parse(std::string_view text) {
  return parse_json(text).value();
}

TEST(VmJsonTest, ParsesAFullCreateRequest) {
  auto request = parse_create_vm(parse(R"({"name":"web","cpus":2,"memory_mib":256,"disk_mib":2048,
      "source":{"directory":"/srv/root"},"labels":{"team":"a"},
      "shared_folders":[{"host_path":"/srv","guest_path":"data","read_only":true}],"tag":"t"})"));
  ASSERT_TRUE(request) << request.error().message();
  EXPECT_EQ(request->name, "web");
  EXPECT_EQ(request->cpus, 2U);
  EXPECT_EQ(request->memory_mib, 256U);
  EXPECT_EQ(request->disk_mib, 2048U);
  EXPECT_EQ(request->source.kind, daemon::RootSource::Kind::kDirectory);
  EXPECT_EQ(request->source.value, "/srv/root");
  EXPECT_EQ(request->labels.at("team"), "a");
  ASSERT_EQ(request->folders.size(), 1U);
  EXPECT_TRUE(request->folders[0].read_only);
}

TEST(VmJsonTest, ImageShorthand) {
  auto request = parse_create_vm(parse(R"({"image":"busybox"})"));
  ASSERT_TRUE(request);
  EXPECT_EQ(request->source.kind, daemon::RootSource::Kind::kImage);
  EXPECT_FALSE(parse_create_vm(parse(R"({"image":"busybox","source":{"vm":"x"}})")));
}

TEST(VmJsonTest, RejectsBadInputNamingTheField) {
  struct Case {
    const char* body;
    const char* mentions;
  };
  for (auto [body, mentions] : std::initializer_list<Case>{
           {R"({"nmae":"x"})", "nmae"},
           {R"({"cpus":"2"})", "cpus"},
           {R"({"cpus":0})", "cpus"},
           {R"({"memory_mib":-5})", "memory_mib"},
           {R"({"source":{"floppy":"/x"}})", "floppy"},
           {R"({"source":{"directory":1}})", "directory"},
           {R"({"labels":{"a":1}})", "label"},
           {R"({"shared_folders":[{"host_path":"/x"}]})", "guest_path"},
           {R"([1,2])", ""},
       }) {
    auto request = parse_create_vm(parse(body));
    ASSERT_FALSE(request) << body;
    EXPECT_EQ(request.error().category(), ErrorCategory::kInvalidArgument) << body;
    EXPECT_NE(request.error().message().find(mentions), std::string::npos) << request.error().message();
  }
}

TEST(VmJsonTest, ExecNeedsACommand) {
  EXPECT_FALSE(parse_exec(parse(R"({"cmd":[]})")));
  EXPECT_FALSE(parse_exec(parse(R"({"cmd":"ls"})")));
  EXPECT_FALSE(parse_exec(parse(R"({"cmd":["ls"],"env":["NOEQUALS"]})")));
  auto exec = parse_exec(parse(R"({"cmd":["ls","-l"],"tty":true,"stdin":true,"user":"1000:100"})"));
  ASSERT_TRUE(exec);
  EXPECT_TRUE(exec->process.tty);
  EXPECT_TRUE(exec->attach_stdin);
  EXPECT_EQ(exec->process.uid, 1000U);
  EXPECT_EQ(exec->process.gid, 100U);
}

// "-1" used to pass as 4294967295 (std::stoul wraps it), which setresuid() reads as "leave unchanged".
TEST(VmJsonTest, ExecUserIsPlainNumbersNeverMinusOne) {
  for (const char* user : {"-1", "0:-1", "4294967295", "1000:4294967295", "99999999999", "root",
                           "1000:", ":100", "1e3", " 1000"}) {
    auto exec = parse_exec(parse(fmt::format(R"({{"cmd":["id"],"user":"{}"}})", user)));
    ASSERT_FALSE(exec) << user;
    EXPECT_EQ(exec.error().category(), ErrorCategory::kInvalidArgument) << user;
    EXPECT_NE(exec.error().message().find(fmt::format("user \"{}\"", user)), std::string::npos)
        << exec.error().message();
  }
  auto root = parse_exec(parse(R"({"cmd":["id"],"user":"0"})"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->process.uid, 0U);
  EXPECT_EQ(root->process.gid, std::nullopt);
}

TEST(VmJsonTest, VmJsonShowsState) {
  daemon::VmRecord vm;
  vm.id = "abc";
  vm.name = "web";
  vm.state = daemon::VmState::kPaused;
  Json json = vm_to_json(vm);
  EXPECT_EQ(json["state"], "paused");
  EXPECT_TRUE(json["addresses"].is_array());
}

}  // namespace
}  // namespace kiln::api::rest

#include "image/registry_client.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::image {
namespace {

TEST(AuthChallengeTest, ParsesBearerWithQuotedCommas) {
  auto challenge = parse_auth_challenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push")");
  ASSERT_TRUE(challenge.has_value()) << challenge.error().message();
  EXPECT_EQ(challenge->scheme, "bearer");
  EXPECT_EQ(challenge->params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(challenge->params["service"], "registry.docker.io");
  EXPECT_EQ(challenge->params["scope"], "repository:a/b:pull,push");
}

TEST(AuthChallengeTest, ParsesBasicAndUnquotedValues) {
  auto basic = parse_auth_challenge(R"(Basic realm="basic-realm")");
  ASSERT_TRUE(basic.has_value());
  EXPECT_EQ(basic->scheme, "basic");
  EXPECT_EQ(basic->params["realm"], "basic-realm");
  auto unquoted = parse_auth_challenge("Bearer realm=https://x/token, service=svc");
  ASSERT_TRUE(unquoted.has_value());
  EXPECT_EQ(unquoted->params["realm"], "https://x/token");
  EXPECT_EQ(unquoted->params["service"], "svc");
  EXPECT_FALSE(parse_auth_challenge(R"(Bearer realm="unterminated)").has_value());
}

TEST(DockerConfigTest, FindsCredentialsByRegistryHost) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir.has_value());
  std::string path = dir->path() + "/config.json";
  // "alice:s3cr:et" and "bob:pw"
  ASSERT_TRUE(write_file_atomic(path, R"({"auths": {
      "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjpldA=="},
      "127.0.0.1:5000": {"auth": "Ym9iOnB3"},
      "https://reg.example.com/v2/": {"username": "carol", "password": "x"}}})")
                  .has_value());
  auto hub = credentials_from_docker_config(path, "docker.io");
  ASSERT_TRUE(hub.has_value() && hub->has_value()) << (hub ? "none" : hub.error().message());
  EXPECT_EQ((*hub)->username, "alice");
  EXPECT_EQ((*hub)->password, "s3cr:et");
  auto local = credentials_from_docker_config(path, "127.0.0.1:5000");
  ASSERT_TRUE(local.has_value() && local->has_value());
  EXPECT_EQ((*local)->username, "bob");
  EXPECT_EQ((*local)->password, "pw");
  EXPECT_EQ((*credentials_from_docker_config(path, "reg.example.com"))->username, "carol");
  EXPECT_FALSE(credentials_from_docker_config(path, "other:5000")->has_value());
  EXPECT_FALSE(credentials_from_docker_config(dir->path() + "/missing.json", "docker.io")->has_value());
}

// A fake `docker-credential-NAME` on PATH: answers from a table keyed by the server address it reads on
// stdin, "credentials not found in native keychain" (exit 1) otherwise, as the real helpers do.
void write_helper(const std::string& dir, const std::string& name, const std::string& table) {
  std::string script = "#!/bin/sh\nread -r server\necho \"$server\" >> " + dir + "/" + name +
                       ".asked\ncase \"$server\" in\n" + table +
                       "\n*) echo 'credentials not found in native keychain'; exit 1;;\nesac\n";
  std::string path = dir + "/docker-credential-" + name;
  ASSERT_TRUE(write_file_atomic(path, script));
  ASSERT_EQ(::chmod(path.c_str(), 0755), 0);
}

TEST(DockerConfigTest, CredentialHelpersComeFirstAsInTheDockerCli) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir.has_value());
  write_helper(dir->path(), "store",
               "'https://index.docker.io/v1/') echo "
               "'{\"ServerURL\":\"x\",\"Username\":\"hubuser\",\"Secret\":\"hubpw\"}';;\n"
               "'127.0.0.1:5000') echo '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}';;");
  write_helper(dir->path(), "special",
               "'reg.example.com') echo '{\"Username\":\"dave\",\"Secret\":\"pw\"}';;");
  write_helper(dir->path(), "broken", "*) echo 'keyring locked' >&2; exit 3;;");
  const char* inherited_path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): single-threaded test
  std::string old_path = inherited_path != nullptr ? inherited_path : "";
  ::setenv("PATH", (dir->path() + ":" + old_path).c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  std::string path = dir->path() + "/config.json";
  ASSERT_TRUE(write_file_atomic(path, R"({"credsStore": "store", "credHelpers": {"reg.example.com": "special",
      "broken.example.com": "broken", "gone.example.com": "nosuchhelper"},
      "auths": {"other:5000": {"auth": "Ym9iOnB3"}}})"));
  auto hub = credentials_from_docker_config(path, "docker.io");
  ASSERT_TRUE(hub && *hub) << (hub ? "none" : hub.error().message());
  EXPECT_EQ((*hub)->username, "hubuser");
  EXPECT_EQ((*hub)->password, "hubpw");
  auto special = credentials_from_docker_config(path, "reg.example.com");
  ASSERT_TRUE(special && *special);
  EXPECT_EQ((*special)->username, "dave");
  // The store is final: "not found" there is anonymous, even with an "auths" entry (the docker CLI agrees).
  auto other = credentials_from_docker_config(path, "other:5000");
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->has_value());
  auto token = credentials_from_docker_config(path, "127.0.0.1:5000");
  ASSERT_FALSE(token);
  EXPECT_NE(token.error().message().find("identity token"), std::string::npos);
  auto broken = credentials_from_docker_config(path, "broken.example.com");
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message().find("keyring locked"), std::string::npos) << broken.error().message();
  auto missing = credentials_from_docker_config(path, "gone.example.com");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("docker-credential-nosuchhelper"), std::string::npos);
  ::setenv("PATH", old_path.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  auto asked = read_file(dir->path() + "/store.asked", 4096);
  ASSERT_TRUE(asked);
  EXPECT_EQ(*asked, "https://index.docker.io/v1/\nother:5000\n127.0.0.1:5000\n");
}

TEST(RegistryAuthHeaderTest, RoundTripsAndAcceptsWhatDockerSends) {
  std::string header = encode_registry_auth({.username = "alice", .password = "s3cret?>"}, "127.0.0.1:5000");
  auto decoded = decode_registry_auth(header);
  ASSERT_TRUE(decoded && *decoded);
  EXPECT_EQ((*decoded)->username, "alice");
  EXPECT_EQ((*decoded)->password, "s3cret?>");
  // docker sends base64url("{}") when it has no credentials: anonymous, not an error.
  EXPECT_FALSE(decode_registry_auth("e30=")->has_value());
  EXPECT_FALSE(decode_registry_auth("")->has_value());
  auto garbage = decode_registry_auth("not base64!");
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message().find("invalid X-Registry-Auth header"), std::string::npos);
  EXPECT_FALSE(decode_registry_auth("WzFd"));  // "[1]"
}

TEST(RegistryHostTest, LoopbackDetection) {
  EXPECT_TRUE(is_loopback_registry("localhost:5000"));
  EXPECT_TRUE(is_loopback_registry("127.0.0.1:41000"));
  EXPECT_TRUE(is_loopback_registry("[::1]:5000"));
  EXPECT_FALSE(is_loopback_registry("docker.io"));
  EXPECT_FALSE(is_loopback_registry("localhost.example.com"));
  EXPECT_FALSE(is_loopback_registry("10.0.0.1:5000"));
}

}  // namespace
}  // namespace kiln::image

#include "image/registry_client.h"

#include <gtest/gtest.h>

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

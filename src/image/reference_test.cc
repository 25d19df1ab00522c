#include "image/reference.h"

#include <gtest/gtest.h>

namespace kiln::image {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string normalized(std::string_view text) {
  auto ref = ImageRef::parse(text);
  EXPECT_TRUE(ref.has_value()) << text << ": " << ref.error().message();
  return ref ? ref->to_string() : "";
}

TEST(ImageRefTest, NormalizesLikeDocker) {
  EXPECT_EQ(normalized("busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalized("busybox:1.36"), "docker.io/library/busybox:1.36");
  EXPECT_EQ(normalized("library/busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalized("docker.io/busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalized("index.docker.io/busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalized("user/app:v2"), "docker.io/user/app:v2");
  EXPECT_EQ(normalized("quay.io/org/app"), "quay.io/org/app:latest");
  EXPECT_EQ(normalized("localhost/app"), "localhost/app:latest");
  EXPECT_EQ(normalized("localhost:5000/app:1"), "localhost:5000/app:1");
  EXPECT_EQ(normalized("127.0.0.1:41234/a/b/c:t"), "127.0.0.1:41234/a/b/c:t");
  EXPECT_EQ(normalized("[::1]:5000/app"), "[::1]:5000/app:latest");
  EXPECT_EQ(normalized("a__b/c-d/e---f.g_h"), "docker.io/a__b/c-d/e---f.g_h:latest");
  EXPECT_EQ(normalized("ubuntu:Latest_1.0-x"), "docker.io/library/ubuntu:Latest_1.0-x");
}

TEST(ImageRefTest, UppercaseFirstComponentIsARegistryHost) {
  // Docker treats a first component with upper-case letters as a domain (it cannot be a path).
  EXPECT_EQ(normalized("Registry/app"), "Registry/app:latest");
}

TEST(ImageRefTest, Digests) {
  auto ref = ImageRef::parse("busybox@sha256:" + kHex);
  ASSERT_TRUE(ref.has_value());
  EXPECT_FALSE(ref->tag().has_value());
  ASSERT_TRUE(ref->digest().has_value());
  EXPECT_EQ(ref->digest()->hex(), kHex);
  EXPECT_EQ(ref->to_string(), "docker.io/library/busybox@sha256:" + kHex);
  EXPECT_EQ(ref->familiar(), "busybox@sha256:" + kHex);

  auto both = ImageRef::parse("host:5000/x:v1@sha256:" + kHex);
  ASSERT_TRUE(both.has_value());
  EXPECT_EQ(both->domain(), "host:5000");
  EXPECT_EQ(*both->tag(), "v1");
  EXPECT_EQ(both->to_string(), "host:5000/x:v1@sha256:" + kHex);
}

TEST(ImageRefTest, Parts) {
  auto ref = ImageRef::parse("localhost:5000/team/app:v3");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->domain(), "localhost:5000");
  EXPECT_EQ(ref->path(), "team/app");
  EXPECT_EQ(ref->repository(), "localhost:5000/team/app");
  EXPECT_EQ(ref->familiar(), "localhost:5000/team/app:v3");
  EXPECT_EQ(ImageRef::parse("busybox")->familiar(), "busybox:latest");
  EXPECT_EQ(ImageRef::parse("user/app")->familiar_repository(), "user/app");
  EXPECT_EQ(ImageRef::parse("busybox")->with_tag("x").to_string(), "docker.io/library/busybox:x");
}

TEST(ImageRefTest, RejectsInvalid) {
  for (const std::string& bad : std::vector<std::string>{"",
                                                         ":",
                                                         "BusyBox",
                                                         "user/App",
                                                         "a//b",
                                                         "-a",
                                                         "a-",
                                                         "a:",
                                                         "a:-tag",
                                                         "a@sha256:123",
                                                         "a@md5:" + kHex,
                                                         kHex,
                                                         "host:port/app",
                                                         "a/b:t/c",
                                                         "a..b",
                                                         "host:5000/",
                                                         "a:" + std::string(129, 't'),
                                                         std::string(256, 'a'),
                                                         "a b",
                                                         "[::1/x"}) {
    auto ref = ImageRef::parse(bad);
    EXPECT_FALSE(ref.has_value()) << "accepted '" << bad << "' as " << (ref ? ref->to_string() : "");
  }
  auto upper = ImageRef::parse("BusyBox");
  ASSERT_FALSE(upper.has_value());
  EXPECT_EQ(upper.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_NE(upper.error().message().find("must be lowercase"), std::string::npos);
}

TEST(DigestTest, ParsesAndValidates) {
  auto digest = Digest::parse("sha256:" + kHex);
  ASSERT_TRUE(digest.has_value());
  EXPECT_EQ(digest->short_id(), "0123456789ab");
  EXPECT_EQ(Digest::parse("sha512:" + kHex).error().category(), ErrorCategory::kUnsupported);
  EXPECT_FALSE(Digest::parse("sha256:" + kHex.substr(1)).has_value());
  EXPECT_FALSE(Digest::parse("sha256:" + std::string(64, 'A')).has_value());
  EXPECT_FALSE(
      Digest::parse("sha256:../../../../etc/passwd00000000000000000000000000000000000000").has_value());
  EXPECT_EQ(Digest::of("").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace kiln::image

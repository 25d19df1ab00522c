#include "api/http/endpoint.h"

#include <gtest/gtest.h>

namespace kiln::api::http {
namespace {

TEST(Endpoint, ParsesUnixAndTcp) {
  Result<Endpoint> unix_endpoint = parse_endpoint("unix:///run/kiln/kiln.sock");
  ASSERT_TRUE(unix_endpoint);
  EXPECT_EQ(unix_endpoint->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(unix_endpoint->path, "/run/kiln/kiln.sock");

  Result<Endpoint> tcp = parse_endpoint("tcp://0.0.0.0:2375");
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(tcp->host, "0.0.0.0");
  EXPECT_EQ(tcp->port, 2375);

  Result<Endpoint> v6 = parse_endpoint("tcp://[::1]:0");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->to_string(), "tcp://[::1]:0");
}

TEST(Endpoint, EmptyHostMeansLoopbackNotEverywhere) {
  Result<Endpoint> tcp = parse_endpoint("tcp://:2375");
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->host, "127.0.0.1");
}

TEST(Endpoint, RejectsMalformedWithAReason) {
  for (const char* text : {"", "/run/kiln.sock", "unix://relative.sock", "tcp://host", "tcp://host:99999",
                           "tcp://host:x", "tcp://::1:80", "tcp://[::1", "http://host:80", "fd://"}) {
    Result<Endpoint> endpoint = parse_endpoint(text);
    ASSERT_FALSE(endpoint) << text;
    EXPECT_EQ(endpoint.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_NE(endpoint.error().message().find("invalid endpoint"), std::string::npos);
  }
}

TEST(Endpoint, ClientAcceptsBarePathsAndHttp) {
  Result<Endpoint> bare = parse_client_endpoint("/run/kiln/kiln.sock");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->kind, Endpoint::Kind::kUnix);
  Result<Endpoint> http = parse_client_endpoint("http://127.0.0.1:8080");
  ASSERT_TRUE(http);
  EXPECT_EQ(http->port, 8080);
  EXPECT_EQ(parse_client_endpoint("tcp://localhost:1")->host, "localhost");
}

}  // namespace
}  // namespace kiln::api::http

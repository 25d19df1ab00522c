#include "common/encoding.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(Encoding, PercentEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(percent_encode("host:5000/app name?&="), "host%3A5000%2Fapp%20name%3F%26%3D");
  EXPECT_EQ(percent_encode("\xff"), "%FF");
}

TEST(Encoding, Base64RoundTripsEveryLength) {
  std::string data;
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(*base64_decode(base64_encode(data)), data);
    EXPECT_EQ(*base64_decode(base64url_encode(data)), data);
    data.push_back(static_cast<char>(i * 37 + 200));
  }
}

TEST(Encoding, Base64KnownVectors) {
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8=");
  EXPECT_EQ(*base64_decode("Zm8"), "fo");  // unpadded
  EXPECT_EQ(*base64_decode("dXNlcjpwYXNz"), "user:pass");
}

TEST(Encoding, Base64RejectsGarbage) {
  EXPECT_FALSE(base64_decode("Zm9v YmFy"));
  EXPECT_FALSE(base64_decode("Z"));
  EXPECT_FALSE(base64_decode("Zm9v*"));
}

}  // namespace
}  // namespace kiln

#include "agent/protocol/frame_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

TEST(AgentFrameWriter, FlushesInOrderAndKeepsWhatTheFdRefuses) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair.has_value());
  ASSERT_TRUE(set_nonblocking(pair->first.get()).has_value());
  FrameWriter writer;
  // More than a socket buffer holds, so the first flush cannot finish.
  for (int i = 0; i < 64; ++i)
    writer.push(MessageType::kStdout, 1, std::string(64 * 1024, static_cast<char>('a' + i % 26)));
  ASSERT_TRUE(writer.flush(pair->first.get()).has_value());
  EXPECT_FALSE(writer.empty());

  FrameDecoder decoder;
  int frames = 0;
  while (frames < 64) {
    char buffer[65536];
    ssize_t n = ::read(pair->second.get(), buffer, sizeof buffer);
    ASSERT_GT(n, 0);
    decoder.feed(std::string_view(buffer, static_cast<size_t>(n)));
    for (;;) {
      auto frame = decoder.next();
      ASSERT_TRUE(frame.has_value());
      if (!*frame) break;
      EXPECT_EQ((*frame)->payload[0], static_cast<char>('a' + frames % 26));
      ++frames;
    }
    ASSERT_TRUE(writer.flush(pair->first.get()).has_value());
  }
  EXPECT_TRUE(writer.empty());
}

TEST(AgentFrameWriter, ClosedPeerIsUnavailableNotSigpipe) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair.has_value());
  pair->second.reset();
  FrameWriter writer;
  writer.push(MessageType::kPing, 0, "x");
  auto flushed = writer.flush(pair->first.get());
  ASSERT_FALSE(flushed.has_value());
  EXPECT_EQ(flushed.error().category(), ErrorCategory::kUnavailable);
}

}  // namespace
}  // namespace kiln::agent

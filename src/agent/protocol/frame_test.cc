#include "agent/protocol/frame.h"

#include <gtest/gtest.h>

#include <vector>

namespace kiln::agent {
namespace {

std::vector<Frame> decode_all(FrameDecoder& decoder) {
  std::vector<Frame> frames;
  for (;;) {
    auto frame = decoder.next();
    EXPECT_TRUE(frame.has_value()) << frame.error().message();
    if (!frame || !*frame) return frames;
    frames.push_back(std::move(**frame));
  }
}

std::string header(uint8_t magic, uint8_t version, uint8_t type, uint32_t stream, uint32_t length) {
  std::string out{static_cast<char>(magic), static_cast<char>(version), static_cast<char>(type), 0};
  for (uint32_t value : {stream, length}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
  return out;
}

TEST(AgentFrame, HeaderLayoutIsLittleEndian) {
  std::string bytes = encode_frame(MessageType::kStdout, 0x01020304, "hi");
  ASSERT_EQ(bytes.size(), kHeaderSize + 2);
  EXPECT_EQ(bytes.substr(0, kHeaderSize), header(kFrameMagic, kFrameFormatVersion, 0x21, 0x01020304, 2));
  EXPECT_EQ(bytes.substr(kHeaderSize), "hi");
}

TEST(AgentFrame, RoundTripsSeveralFrames) {
  std::string stream = encode_frame(MessageType::kHello, 0, "{}") + encode_frame(MessageType::kStdin, 7, "") +
                       encode_frame(MessageType::kStdout, 9, std::string(70000, 'x'));
  FrameDecoder decoder;
  decoder.feed(stream);
  auto frames = decode_all(decoder);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].type, MessageType::kHello);
  EXPECT_EQ(frames[0].payload, "{}");
  EXPECT_EQ(frames[1].type, MessageType::kStdin);
  EXPECT_EQ(frames[1].stream, 7u);
  EXPECT_EQ(frames[1].payload, "");
  EXPECT_EQ(frames[2].stream, 9u);
  EXPECT_EQ(frames[2].payload, std::string(70000, 'x'));
  EXPECT_EQ(decoder.buffered(), 0u);
  EXPECT_TRUE(decoder.finish().has_value());
}

TEST(AgentFrame, DecodesByteByByte) {
  std::string stream =
      encode_frame(MessageType::kPing, 0, "abc") + encode_frame(MessageType::kStderr, 3, "error");
  FrameDecoder decoder;
  std::vector<Frame> frames;
  for (char byte : stream) {
    decoder.feed(std::string_view(&byte, 1));
    for (auto& frame : decode_all(decoder)) frames.push_back(std::move(frame));
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, "abc");
  EXPECT_EQ(frames[1].type, MessageType::kStderr);
  EXPECT_EQ(frames[1].payload, "error");
}

TEST(AgentFrame, MaxPayloadIsAccepted) {
  FrameDecoder decoder;
  decoder.feed(encode_frame(MessageType::kStdout, 1, std::string(kMaxPayload, 'a')));
  auto frames = decode_all(decoder);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload.size(), kMaxPayload);
}

TEST(AgentFrame, OversizedLengthFailsBeforeThePayloadArrives) {
  FrameDecoder decoder;
  decoder.feed(header(kFrameMagic, kFrameFormatVersion, 0x21, 1, kMaxPayload + 1));
  auto frame = decoder.next();
  ASSERT_FALSE(frame.has_value());
  EXPECT_EQ(frame.error().category(), ErrorCategory::kProtocol);
  EXPECT_NE(frame.error().message().find("too large"), std::string::npos) << frame.error().message();
  EXPECT_EQ(decoder.failure(), FrameError::kOversized);
}

TEST(AgentFrame, BadMagicIsAnError) {
  FrameDecoder decoder;
  decoder.feed("GET / HTTP/1.1\r\n");
  auto frame = decoder.next();
  ASSERT_FALSE(frame.has_value());
  EXPECT_EQ(decoder.failure(), FrameError::kBadMagic);
  EXPECT_NE(frame.error().message().find("magic"), std::string::npos);
}

TEST(AgentFrame, OtherFormatVersionIsAnError) {
  FrameDecoder decoder;
  decoder.feed(header(kFrameMagic, 2, 0x03, 0, 0));
  EXPECT_FALSE(decoder.next().has_value());
  EXPECT_EQ(decoder.failure(), FrameError::kUnsupportedFormat);
}

TEST(AgentFrame, UnknownMessageTypeIsAnError) {
  FrameDecoder decoder;
  decoder.feed(header(kFrameMagic, kFrameFormatVersion, 0x7f, 1, 0));
  auto frame = decoder.next();
  ASSERT_FALSE(frame.has_value());
  EXPECT_EQ(decoder.failure(), FrameError::kUnknownType);
  EXPECT_NE(frame.error().message().find("0x7f"), std::string::npos);
}

TEST(AgentFrame, ErrorIsSticky) {
  FrameDecoder decoder;
  decoder.feed("xxxxxxxxxxxxxxxx");
  EXPECT_FALSE(decoder.next().has_value());
  decoder.feed(encode_frame(MessageType::kPing, 0, ""));
  EXPECT_FALSE(decoder.next().has_value());
  EXPECT_FALSE(decoder.finish().has_value());
}

TEST(AgentFrame, TruncatedFrameAtEndOfStream) {
  std::string bytes = encode_frame(MessageType::kStdout, 1, "hello world");
  for (size_t cut : {size_t{1}, kHeaderSize - 1, kHeaderSize, bytes.size() - 1}) {
    FrameDecoder decoder;
    decoder.feed(std::string_view(bytes).substr(0, cut));
    auto frame = decoder.next();
    ASSERT_TRUE(frame.has_value());
    EXPECT_FALSE(frame->has_value());
    auto end = decoder.finish();
    ASSERT_FALSE(end.has_value()) << "cut at " << cut;
    EXPECT_NE(end.error().message().find("ended inside a frame"), std::string::npos);
    EXPECT_EQ(decoder.failure(), FrameError::kTruncated);
  }
}

TEST(AgentFrame, FlagsAreCarriedButNotInterpreted) {
  std::string bytes = encode_frame(MessageType::kPing, 0, "");
  bytes[3] = static_cast<char>(0x80);
  FrameDecoder decoder;
  decoder.feed(bytes);
  auto frames = decode_all(decoder);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].flags, 0x80);
}

}  // namespace
}  // namespace kiln::agent

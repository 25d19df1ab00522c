// The g++ stand-in for fuzz/frame_decoder_fuzz.cc: thousands of random and mutated streams with a fixed seed,
// cut into random chunks. Under the dev build's ASan+UBSan this proves the decoder survives hostile input.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"

namespace kiln::agent {
namespace {

// Valid frames of every type, so mutations start close to what a decoder must really handle.
std::string valid_stream() {
  std::string out;
  append_frame(out, MessageType::kHello, 0, encode(HelloRequest{}));
  append_frame(out, MessageType::kRun, 1, encode(ProcessSpec{.argv = {"sh", "-c", "echo hi"}, .tty = true}));
  append_frame(out, MessageType::kStdin, 1, "input bytes");
  append_frame(out, MessageType::kCredit, 1, encode(CreditGrant{DataChannel::kStdout, 4096}));
  append_frame(out, MessageType::kSignal, 1, encode(SignalRequest{15}));
  append_frame(out, MessageType::kResize, 1, encode(TtySize{40, 100}));
  append_frame(out, MessageType::kExit, 1, encode(ExitStatus::signaled(9)));
  append_frame(out, MessageType::kError, 1, encode(ErrorReply{ErrorCategory::kNotFound, "exec x: gone"}));
  return out;
}

void decode_payload(const Frame& frame) {
  switch (frame.type) {
    case MessageType::kHello:
      (void)decode_hello_request(frame.payload);
      break;
    case MessageType::kHelloReply:
      (void)decode_hello_reply(frame.payload);
      break;
    case MessageType::kRun:
      (void)decode_process_spec(frame.payload);
      break;
    case MessageType::kStarted:
      (void)decode_process_started(frame.payload);
      break;
    case MessageType::kExit:
      (void)decode_exit_status(frame.payload);
      break;
    case MessageType::kSignal:
      (void)decode_signal_request(frame.payload);
      break;
    case MessageType::kResize:
      (void)decode_tty_size(frame.payload);
      break;
    case MessageType::kShutdown:
      (void)decode_shutdown_request(frame.payload);
      break;
    case MessageType::kError:
      (void)decode_error_reply(frame.payload);
      break;
    case MessageType::kCredit:
      (void)decode_credit_grant(frame.payload);
      break;
    default:
      break;
  }
}

// Returns how many frames decoded; the decoder must end in a frame, an error, or wanting more bytes.
size_t run_decoder(const std::string& input, std::mt19937& rng) {
  FrameDecoder decoder;
  size_t frames = 0;
  size_t offset = 0;
  while (offset < input.size()) {
    size_t chunk = std::uniform_int_distribution<size_t>(1, 97)(rng);
    decoder.feed(std::string_view(input).substr(offset, chunk));
    offset += chunk;
    for (;;) {
      auto frame = decoder.next();
      if (!frame || !*frame) break;
      EXPECT_LE((*frame)->payload.size(), kMaxPayload);
      decode_payload(**frame);
      ++frames;
    }
    EXPECT_LE(decoder.buffered(), input.size());
  }
  (void)decoder.finish();
  return frames;
}

TEST(AgentFrameFuzzSmoke, RandomBytes) {
  std::mt19937 rng(20240601);
  for (int round = 0; round < 2000; ++round) {
    std::string input(std::uniform_int_distribution<size_t>(0, 300)(rng), '\0');
    for (char& byte : input) byte = static_cast<char>(rng());
    // Half the inputs start with a plausible header so the length and type checks are reached.
    if (round % 2 == 0 && input.size() >= 3) {
      input[0] = static_cast<char>(kFrameMagic);
      input[1] = static_cast<char>(kFrameFormatVersion);
    }
    run_decoder(input, rng);
  }
}

TEST(AgentFrameFuzzSmoke, MutatedValidStreams) {
  std::mt19937 rng(42);
  const std::string valid = valid_stream();
  EXPECT_EQ(run_decoder(valid, rng), 8u);
  for (int round = 0; round < 3000; ++round) {
    std::string input = valid;
    int mutations = std::uniform_int_distribution<int>(1, 8)(rng);
    for (int i = 0; i < mutations; ++i) {
      size_t at = std::uniform_int_distribution<size_t>(0, input.size() - 1)(rng);
      switch (rng() % 4) {
        case 0:
          input[at] = static_cast<char>(rng());
          break;  // flip a byte
        case 1:
          input[at] = static_cast<char>(input[at] ^ (1 << (rng() % 8)));
          break;  // flip a bit
        case 2:
          input.erase(at, std::uniform_int_distribution<size_t>(1, 16)(rng));
          break;
        default:
          input.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng())));
          break;
      }
      if (input.empty()) input = valid;
    }
    run_decoder(input, rng);
  }
}

}  // namespace
}  // namespace kiln::agent

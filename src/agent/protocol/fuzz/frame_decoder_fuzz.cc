// libFuzzer target: arbitrary bytes, cut into arbitrary chunks, through the frame decoder and every message
// decoder. The decoders must return errors, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"

namespace {

void decode_payload(const kiln::agent::Frame& frame) {
  using kiln::agent::MessageType;
  std::string_view payload = frame.payload;
  switch (frame.type) {
    case MessageType::kHello:
      (void)kiln::agent::decode_hello_request(payload);
      break;
    case MessageType::kHelloReply:
      (void)kiln::agent::decode_hello_reply(payload);
      break;
    case MessageType::kRun:
      (void)kiln::agent::decode_process_spec(payload);
      break;
    case MessageType::kStarted:
      (void)kiln::agent::decode_process_started(payload);
      break;
    case MessageType::kExit:
      (void)kiln::agent::decode_exit_status(payload);
      break;
    case MessageType::kSignal:
      (void)kiln::agent::decode_signal_request(payload);
      break;
    case MessageType::kResize:
      (void)kiln::agent::decode_tty_size(payload);
      break;
    case MessageType::kShutdown:
      (void)kiln::agent::decode_shutdown_request(payload);
      break;
    case MessageType::kError:
      (void)kiln::agent::decode_error_reply(payload);
      break;
    case MessageType::kCredit:
      (void)kiln::agent::decode_credit_grant(payload);
      break;
    case MessageType::kMount:
      if (auto request = kiln::agent::decode_mount_request(payload)) {
        (void)kiln::agent::normalize_guest_path(request->target, "MOUNT target");
      }
      break;
    case MessageType::kUnmount:
      (void)kiln::agent::decode_unmount_request(payload);
      break;
    case MessageType::kSetClock:
      (void)kiln::agent::decode_set_clock_request(payload);
      break;
    case MessageType::kSetHostname:
      (void)kiln::agent::decode_set_hostname_request(payload);
      break;
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the chunk size, so the fuzzer explores partial frames too.
  size_t chunk = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  kiln::agent::FrameDecoder decoder;
  for (size_t offset = 0; offset < input.size(); offset += chunk) {
    decoder.feed(input.substr(offset, chunk));
    for (;;) {
      auto frame = decoder.next();
      if (!frame || !*frame) break;
      decode_payload(**frame);
    }
  }
  (void)decoder.finish();
  return 0;
}

#include "agent/protocol/frame.h"

#include <cassert>

namespace kiln::agent {

namespace {

void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint32_t get_u32(const uint8_t* bytes) {
  return uint32_t{bytes[0]} | (uint32_t{bytes[1]} << 8) | (uint32_t{bytes[2]} << 16) |
         (uint32_t{bytes[3]} << 24);
}

std::string_view describe(FrameError kind) {
  switch (kind) {
    case FrameError::kBadMagic:
      return "bad frame magic";
    case FrameError::kUnsupportedFormat:
      return "unsupported frame format version";
    case FrameError::kOversized:
      return "frame payload too large";
    case FrameError::kUnknownType:
      return "unknown message type";
    case FrameError::kTruncated:
      return "stream ended inside a frame";
  }
  return "framing error";
}

}  // namespace

bool is_known_message_type(uint8_t type) {
  switch (static_cast<MessageType>(type)) {
    case MessageType::kHello:
    case MessageType::kHelloReply:
    case MessageType::kPing:
    case MessageType::kPong:
    case MessageType::kShutdown:
    case MessageType::kError:
    case MessageType::kRun:
    case MessageType::kStarted:
    case MessageType::kExit:
    case MessageType::kSignal:
    case MessageType::kResize:
    case MessageType::kCloseStdin:
    case MessageType::kReattach:
    case MessageType::kReattachReply:
    case MessageType::kStdin:
    case MessageType::kStdout:
    case MessageType::kStderr:
    case MessageType::kCredit:
    case MessageType::kMount:
    case MessageType::kMountReply:
    case MessageType::kUnmount:
    case MessageType::kUnmountReply:
    case MessageType::kSetClock:
    case MessageType::kSetClockReply:
    case MessageType::kSetHostname:
    case MessageType::kSetHostnameReply:
    case MessageType::kCloneInit:
    case MessageType::kCloneInitReply:
    case MessageType::kConfigureNetwork:
    case MessageType::kConfigureNetworkReply:
      return true;
  }
  return false;
}

std::string_view to_string(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "HELLO";
    case MessageType::kHelloReply:
      return "HELLO_REPLY";
    case MessageType::kPing:
      return "PING";
    case MessageType::kPong:
      return "PONG";
    case MessageType::kShutdown:
      return "SHUTDOWN";
    case MessageType::kError:
      return "ERROR";
    case MessageType::kRun:
      return "RUN";
    case MessageType::kStarted:
      return "STARTED";
    case MessageType::kExit:
      return "EXIT";
    case MessageType::kSignal:
      return "SIGNAL";
    case MessageType::kResize:
      return "RESIZE";
    case MessageType::kCloseStdin:
      return "CLOSE_STDIN";
    case MessageType::kReattach:
      return "REATTACH";
    case MessageType::kReattachReply:
      return "REATTACH_REPLY";
    case MessageType::kStdin:
      return "STDIN";
    case MessageType::kStdout:
      return "STDOUT";
    case MessageType::kStderr:
      return "STDERR";
    case MessageType::kCredit:
      return "CREDIT";
    case MessageType::kMount:
      return "MOUNT";
    case MessageType::kMountReply:
      return "MOUNT_REPLY";
    case MessageType::kUnmount:
      return "UNMOUNT";
    case MessageType::kUnmountReply:
      return "UNMOUNT_REPLY";
    case MessageType::kSetClock:
      return "SET_CLOCK";
    case MessageType::kSetClockReply:
      return "SET_CLOCK_REPLY";
    case MessageType::kSetHostname:
      return "SET_HOSTNAME";
    case MessageType::kSetHostnameReply:
      return "SET_HOSTNAME_REPLY";
    case MessageType::kCloneInit:
      return "CLONE_INIT";
    case MessageType::kCloneInitReply:
      return "CLONE_INIT_REPLY";
    case MessageType::kConfigureNetwork:
      return "CONFIGURE_NETWORK";
    case MessageType::kConfigureNetworkReply:
      return "CONFIGURE_NETWORK_REPLY";
  }
  return "UNKNOWN";
}

void append_frame(std::string& out, MessageType type, StreamId stream, std::string_view payload) {
  // A larger payload is a bug in this process, not hostile input: callers split data into chunks.
  assert(payload.size() <= kMaxPayload);
  out.push_back(static_cast<char>(kFrameMagic));
  out.push_back(static_cast<char>(kFrameFormatVersion));
  out.push_back(static_cast<char>(type));
  out.push_back(0);  // flags
  put_u32(out, stream);
  put_u32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
}

std::string encode_frame(MessageType type, StreamId stream, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  append_frame(out, type, stream, payload);
  return out;
}

void FrameDecoder::feed(std::string_view bytes) {
  if (failure_) return;
  // Drop what was already handed out once it dominates the buffer, so memory stays about one frame.
  if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes);
}

Error FrameDecoder::fail(FrameError kind, std::string detail) {
  failure_ = kind;
  failure_detail_ = std::move(detail);
  buffer_.clear();
  consumed_ = 0;
  return Error::protocol(fmt::format("{}: {}", describe(kind), failure_detail_));
}

Result<std::optional<Frame>> FrameDecoder::next() {
  if (failure_) return Error::protocol(fmt::format("{}: {}", describe(*failure_), failure_detail_));
  size_t available = buffer_.size() - consumed_;
  // Validate the header as soon as it is complete, so a bad length fails before its payload "arrives".
  if (available < kHeaderSize) return std::optional<Frame>{};
  const auto* header = reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_);
  if (header[0] != kFrameMagic) return fail(FrameError::kBadMagic, fmt::format("0x{:02x}", header[0]));
  if (header[1] != kFrameFormatVersion) {
    return fail(FrameError::kUnsupportedFormat,
                fmt::format("{} (this side speaks {})", header[1], kFrameFormatVersion));
  }
  if (!is_known_message_type(header[2]))
    return fail(FrameError::kUnknownType, fmt::format("0x{:02x}", header[2]));
  uint32_t length = get_u32(header + 8);
  if (length > kMaxPayload) {
    return fail(FrameError::kOversized, fmt::format("{} bytes (limit {})", length, kMaxPayload));
  }
  if (available - kHeaderSize < length) return std::optional<Frame>{};

  Frame frame;
  frame.type = static_cast<MessageType>(header[2]);
  frame.flags = header[3];
  frame.stream = get_u32(header + 4);
  frame.payload.assign(buffer_, consumed_ + kHeaderSize, length);
  consumed_ += kHeaderSize + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  return std::optional<Frame>(std::move(frame));
}

Result<void> FrameDecoder::finish() {
  if (failure_) return Error::protocol(fmt::format("{}: {}", describe(*failure_), failure_detail_));
  size_t left = buffer_.size() - consumed_;
  if (left == 0) return ok();
  std::string detail = fmt::format("{} bytes of an incomplete frame", left);
  if (left >= kHeaderSize) {
    uint32_t length = get_u32(reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_) + 8);
    detail = fmt::format("got {} of {} bytes", left, kHeaderSize + length);
  }
  return fail(FrameError::kTruncated, std::move(detail));
}

}  // namespace kiln::agent

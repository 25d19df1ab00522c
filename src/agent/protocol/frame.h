// The agent protocol's framing: a fixed 12-byte header plus a payload of at most kMaxPayload bytes, and a
// streaming decoder that turns arbitrary byte chunks into frames. Used by both ends (host client and the
// guest's kiln-agent). Input is hostile: the decoder never trusts a length or a type it has not checked.
// A FrameDecoder belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::agent {

// Wire layout (all integers little-endian), see src/agent/README.md:
//   0 u8 magic 'K'   1 u8 frame format version   2 u8 type   3 u8 flags   4 u32 stream id   8 u32 length
inline constexpr uint8_t kFrameMagic = 0x4B;
inline constexpr uint8_t kFrameFormatVersion = 1;
inline constexpr size_t kHeaderSize = 12;
inline constexpr uint32_t kMaxPayload = 1u << 20;

// Stream 0 is the connection itself; every other id names one process, chosen by the host.
using StreamId = uint32_t;
inline constexpr StreamId kConnectionStream = 0;

enum class MessageType : uint8_t {
  // Connection level (stream 0).
  kHello = 0x01,       // host -> agent, JSON HelloRequest
  kHelloReply = 0x02,  // agent -> host, JSON HelloReply
  kPing = 0x03,        // either way, opaque payload echoed in kPong
  kPong = 0x04,
  kShutdown = 0x05,  // host -> agent, JSON ShutdownRequest; agent -> host (empty) once synced
  kError = 0x06,     // agent -> host, JSON ErrorReply; stream = the process it concerns, or 0
  // Process control (stream = process id).
  kRun = 0x10,            // host -> agent, JSON ProcessSpec
  kStarted = 0x11,        // agent -> host, JSON {pid}
  kExit = 0x12,           // agent -> host, JSON {code} or {signal}; after all of the process's output
  kSignal = 0x13,         // host -> agent, JSON {signum}
  kResize = 0x14,         // host -> agent, JSON {rows, cols}
  kCloseStdin = 0x15,     // host -> agent, empty
  kReattach = 0x16,       // host -> agent, empty: a new host takes over a process kept across its restart
  kReattachReply = 0x17,  // agent -> host, empty; then the process's held output, in order
  // Data (stream = process id), binary payload.
  kStdin = 0x20,
  kStdout = 0x21,
  kStderr = 0x22,
  kCredit = 0x23,  // either way: binary {u8 channel, u32 bytes}, grants send window on one data channel
  // Guest filesystem requests (stream = a request id the host chose, like a process id; answered by the
  // matching reply on that id, or by ERROR). Capability "mount".
  kMount = 0x30,         // host -> agent, JSON MountRequest
  kMountReply = 0x31,    // agent -> host, JSON {} once mounted
  kUnmount = 0x32,       // host -> agent, JSON UnmountRequest
  kUnmountReply = 0x33,  // agent -> host, JSON {} once unmounted
  // Guest clock (stream = a request id). Capability "clock".
  kSetClock = 0x34,       // host -> agent, JSON SetClockRequest
  kSetClockReply = 0x35,  // agent -> host, JSON {} once set
  // Guest hostname (stream = a request id). Capability "hostname".
  kSetHostname = 0x36,       // host -> agent, JSON SetHostnameRequest
  kSetHostnameReply = 0x37,  // agent -> host, JSON {} once set
  // A VM forked from a template takes its own identity (stream = a request id). Capability "clone_init".
  kCloneInit = 0x38,       // host -> agent, JSON CloneInitRequest
  kCloneInitReply = 0x39,  // agent -> host, JSON {} once clock, hostname, RNG, machine id and mounts are done
  // The guest's NICs (stream = a request id). Capability "network".
  kConfigureNetwork = 0x3a,       // host -> agent, JSON NetworkConfigRequest
  kConfigureNetworkReply = 0x3b,  // agent -> host, JSON {} once every interface is configured
};

// Known types only; anything else is a protocol error.
bool is_known_message_type(uint8_t type);
std::string_view to_string(MessageType type);

// Why a byte stream is not a valid frame sequence. One message each (frame.cc).
enum class FrameError {
  kBadMagic,           // first byte is not kFrameMagic: not a Kiln agent stream, or out of sync
  kUnsupportedFormat,  // header format version this side does not speak
  kOversized,          // declared payload length above kMaxPayload
  kUnknownType,        // message type this protocol version does not define
  kTruncated,          // stream ended inside a frame
};

struct Frame {
  MessageType type = MessageType::kPing;
  uint8_t flags = 0;  // reserved: sent as 0, ignored on receipt
  StreamId stream = kConnectionStream;
  std::string payload;
};

// Appends one encoded frame to `out`. The payload must be at most kMaxPayload (callers split data).
void append_frame(std::string& out, MessageType type, StreamId stream, std::string_view payload);
std::string encode_frame(MessageType type, StreamId stream, std::string_view payload);

// Reassembles frames from a byte stream cut anywhere. After an error the decoder stays failed: a framing
// error means the stream is out of sync, and the only recovery is a new connection.
class FrameDecoder {
 public:
  // Buffers `bytes`. Cheap; validation happens in next().
  void feed(std::string_view bytes);
  // The next complete frame, nullopt when more bytes are needed, or the framing error.
  Result<std::optional<Frame>> next();
  // Call at end of stream: an error if a partial frame is left over.
  Result<void> finish();

  size_t buffered() const { return buffer_.size() - consumed_; }
  // Set once next() has failed.
  std::optional<FrameError> failure() const { return failure_; }

 private:
  Error fail(FrameError kind, std::string detail);

  std::string buffer_;
  size_t consumed_ = 0;  // bytes of buffer_ already returned as frames
  std::optional<FrameError> failure_;
  std::string failure_detail_;
};

}  // namespace kiln::agent

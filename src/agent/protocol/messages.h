// The agent protocol's messages: typed values for every control payload, encoded as JSON (small and
// debuggable) except credit grants, which are frequent and binary. Decoders validate everything a peer
// sends (types, ranges, NUL bytes) and ignore unknown fields, so a minor version may add fields.
// Plain functions over values: callable from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/child_process.h"
#include "common/error.h"

namespace kiln::agent {

// Majors must match; a minor may add optional fields and capabilities only.
struct ProtocolVersion {
  uint32_t major = 0;
  uint32_t minor = 0;
  bool operator==(const ProtocolVersion&) const = default;
};
inline constexpr ProtocolVersion kProtocolVersion{1, 0};

// Bytes a sender may have in flight per data channel before the receiver grants more (README, "Flow
// control").
inline constexpr uint32_t kInitialWindow = 256 * 1024;

struct HelloRequest {
  ProtocolVersion version = kProtocolVersion;
  std::string peer;  // "kiln 0.1.0": for logs only
};

struct HelloReply {
  ProtocolVersion version = kProtocolVersion;
  std::string agent;                      // "kiln-agent 0.1.0"
  std::vector<std::string> capabilities;  // e.g. "tty", "signal", "resize", "shutdown"
};

struct TtySize {
  uint16_t rows = 24;
  uint16_t cols = 80;
  bool operator==(const TtySize&) const = default;
};

// What to run. env nullopt: the agent's default environment (PATH only).
struct ProcessSpec {
  std::vector<std::string> argv;
  std::optional<std::vector<std::string>> env;  // "K=V"
  std::string cwd;                              // empty: "/"
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  bool tty = false;  // a pty: stdout and stderr merged, as with docker -t
  TtySize size;      // initial window size when tty
};

struct ProcessStarted {
  int64_t pid = 0;  // the guest's pid, for logs
};

struct SignalRequest {
  int signum = 0;
};

struct ShutdownRequest {
  bool reboot = false;  // reboot(RB_AUTOBOOT) instead of powering off (QEMU -no-reboot then exits)
};

// An error the agent reports: for a process (its stream) or for the connection (stream 0).
struct ErrorReply {
  ErrorCategory category = ErrorCategory::kInternal;
  std::string message;
};

enum class DataChannel : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2 };
std::string_view to_string(DataChannel channel);

struct CreditGrant {
  DataChannel channel = DataChannel::kStdout;
  uint32_t bytes = 0;
};

std::string encode(const HelloRequest& message);
std::string encode(const HelloReply& message);
std::string encode(const ProcessSpec& message);
std::string encode(const ProcessStarted& message);
std::string encode(const ExitStatus& message);
std::string encode(const SignalRequest& message);
std::string encode(const TtySize& message);
std::string encode(const ShutdownRequest& message);
std::string encode(const ErrorReply& message);
std::string encode(const CreditGrant& message);

Result<HelloRequest> decode_hello_request(std::string_view payload);
Result<HelloReply> decode_hello_reply(std::string_view payload);
Result<ProcessSpec> decode_process_spec(std::string_view payload);
Result<ProcessStarted> decode_process_started(std::string_view payload);
Result<ExitStatus> decode_exit_status(std::string_view payload);
Result<SignalRequest> decode_signal_request(std::string_view payload);
Result<TtySize> decode_tty_size(std::string_view payload);
Result<ShutdownRequest> decode_shutdown_request(std::string_view payload);
Result<ErrorReply> decode_error_reply(std::string_view payload);
Result<CreditGrant> decode_credit_grant(std::string_view payload);

// Error categories travel by stable names ("not_found"), not by enum value.
std::string_view wire_name(ErrorCategory category);
ErrorCategory category_from_wire_name(std::string_view name);  // unknown names: kInternal

}  // namespace kiln::agent

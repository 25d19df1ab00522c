// Docker's stdcopy framing (moby pkg/stdcopy), how the Docker Engine API multiplexes a non-tty process's
// stdout and stderr on one stream (attach, exec, logs): an 8-byte header (byte 0 the stream: 0 stdin, 1
// stdout, 2 stderr; bytes 1-3 zero; bytes 4-7 the payload length, big-endian) before each payload. The one
// encoder and decoder: the agent hub, kilnd's container relay and routes, and the kiln CLI use these.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kiln::stdcopy {

inline constexpr size_t kHeaderSize = 8;
inline constexpr int kStdin = 0;
inline constexpr int kStdout = 1;
inline constexpr int kStderr = 2;

void encode_header(int stream, uint32_t length, char header[kHeaderSize]);
// One frame: header and payload (payloads over 4 GiB are not framed by anyone).
std::string frame(int stream, std::string_view payload);

// Frames -> (stream, payload). Frames may arrive split anywhere.
class Demuxer {
 public:
  using Sink = std::function<bool(int stream, std::string_view payload)>;  // false: stop
  // Hands every complete frame in `data` (after any partial one held from before) to `sink`.
  bool feed(std::string_view data, const Sink& sink);
  size_t pending() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

}  // namespace kiln::stdcopy

// FrameWriter: encoded frames waiting for a non-blocking channel fd, written in order as the fd accepts them.
// Both ends queue frames here and flush when the fd is writable, so neither ever blocks on its peer.
// One owner thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "agent/protocol/frame.h"
#include "common/error.h"

namespace kiln::agent {

class FrameWriter {
 public:
  void push(MessageType type, StreamId stream, std::string_view payload);
  // Bytes queued and not yet written.
  size_t pending() const { return buffer_.size() - written_; }
  bool empty() const { return pending() == 0; }
  // Writes as much as `fd` takes without blocking. kUnavailable once the peer is gone. Sockets are written
  // with MSG_NOSIGNAL so a vanished peer is an error value, not a SIGPIPE.
  Result<void> flush(int fd);
  void clear();

 private:
  std::string buffer_;
  size_t written_ = 0;
  bool not_a_socket_ = false;
};

}  // namespace kiln::agent

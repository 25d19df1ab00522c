// FrameWriter: encoded frames waiting for a non-blocking channel fd, written in order as the fd accepts them.
// Both ends queue frames here and flush when the fd is writable, so neither ever blocks on its peer.
// One owner thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

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
  // Every frame not wholly written yet (a partly written one included, from its start), decoded, in order;
  // the writer is left empty. For a channel that died: a new peer must get whole frames.
  std::vector<Frame> take_unsent_frames();

 private:
  std::string buffer_;
  size_t written_ = 0;
  bool not_a_socket_ = false;
};

}  // namespace kiln::agent

#include "agent/protocol/frame_writer.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace kiln::agent {

void FrameWriter::push(MessageType type, StreamId stream, std::string_view payload) {
  if (written_ > 0 && written_ >= buffer_.size() / 2) {
    buffer_.erase(0, written_);
    written_ = 0;
  }
  append_frame(buffer_, type, stream, payload);
}

Result<void> FrameWriter::flush(int fd) {
  while (written_ < buffer_.size()) {
    const char* data = buffer_.data() + written_;
    size_t size = buffer_.size() - written_;
    ssize_t n = -1;
    if (!not_a_socket_) {
      n = ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == ENOTSOCK) not_a_socket_ = true;
    }
    if (not_a_socket_) n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return ok();
      if (errno == EPIPE || errno == ECONNRESET)
        return Error::unavailable("agent channel closed by the peer");
      return Error::last_os_error("write agent channel");
    }
    written_ += static_cast<size_t>(n);
  }
  clear();
  return ok();
}

std::vector<Frame> FrameWriter::take_unsent_frames() {
  std::vector<Frame> frames;
  FrameDecoder decoder;
  decoder.feed(buffer_);
  size_t offset = 0;
  for (;;) {
    auto frame = decoder.next();
    if (!frame || !*frame) break;  // only this writer's own encoding is in the buffer
    size_t end = offset + kHeaderSize + (*frame)->payload.size();
    if (end > written_) frames.push_back(std::move(**frame));
    offset = end;
  }
  clear();
  return frames;
}

void FrameWriter::clear() {
  buffer_.clear();
  written_ = 0;
}

}  // namespace kiln::agent

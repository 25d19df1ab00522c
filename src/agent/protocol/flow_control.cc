#include "agent/protocol/flow_control.h"

#include <cassert>

namespace kiln::agent {

void SendWindow::consume(size_t bytes) {
  assert(bytes <= available_);
  available_ -= static_cast<uint32_t>(bytes);
}

Result<void> SendWindow::grant(uint32_t bytes) {
  if (bytes > window_ - available_) {
    return Error::protocol(fmt::format("credit of {} bytes exceeds the window ({} bytes outstanding)", bytes,
                                       window_ - available_));
  }
  available_ += bytes;
  return ok();
}

Result<void> ReceiveWindow::on_received(size_t bytes) {
  if (bytes > peer_credit_) {
    return Error::protocol(
        fmt::format("peer sent {} bytes with only {} bytes of credit", bytes, peer_credit_));
  }
  peer_credit_ -= static_cast<uint32_t>(bytes);
  unconsumed_ += static_cast<uint32_t>(bytes);
  return ok();
}

uint32_t ReceiveWindow::on_consumed(size_t bytes) {
  assert(bytes <= unconsumed_);
  unconsumed_ -= static_cast<uint32_t>(bytes);
  pending_grant_ += static_cast<uint32_t>(bytes);
  if (pending_grant_ < window_ / 4) return 0;
  uint32_t grant = pending_grant_;
  pending_grant_ = 0;
  peer_credit_ += grant;
  return grant;
}

}  // namespace kiln::agent

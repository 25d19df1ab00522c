// Credit-based flow control for one data channel of one process, like an HTTP/2 stream window: a sender
// may have at most `window` bytes unacknowledged; the receiver grants bytes back (CREDIT frames) only as it
// consumes them, so a fast producer on either side is bounded by the window, never by the peer's memory.
// Plain values; owned by whoever owns the channel's state (one thread).
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/protocol/messages.h"
#include "common/error.h"

namespace kiln::agent {

// The sending side: how much it may still send.
class SendWindow {
 public:
  SendWindow() : SendWindow(kInitialWindow) {}
  explicit SendWindow(uint32_t window) : window_(window), available_(window) {}

  uint32_t available() const { return available_; }
  // Records bytes just sent. Sending more than available() is a bug in this process.
  void consume(size_t bytes);
  // Adds the peer's grant. Credit beyond the window means the peer granted bytes it never received.
  Result<void> grant(uint32_t bytes);

 private:
  uint32_t window_;
  uint32_t available_;
};

// The receiving side: checks the peer stays within its credit and decides when to grant credit back.
class ReceiveWindow {
 public:
  ReceiveWindow() : ReceiveWindow(kInitialWindow) {}
  explicit ReceiveWindow(uint32_t window) : window_(window), peer_credit_(window) {}

  // Records bytes received; a protocol error if the peer sent more than it was granted.
  Result<void> on_received(size_t bytes);
  // Records bytes consumed (delivered to their destination). Returns the credit to grant the peer now, or 0:
  // grants are batched to at least a quarter window so CREDIT frames stay rare, which cannot stall the
  // peer, since it then still holds at least three quarters of the window.
  uint32_t on_consumed(size_t bytes);
  // Received and not yet consumed: what this side is holding for the channel.
  uint32_t unconsumed() const { return unconsumed_; }

 private:
  // Invariant: peer_credit_ + unconsumed_ + pending_grant_ == window_.
  uint32_t window_;
  uint32_t peer_credit_;
  uint32_t unconsumed_ = 0;
  uint32_t pending_grant_ = 0;
};

}  // namespace kiln::agent

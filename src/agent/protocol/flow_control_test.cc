#include "agent/protocol/flow_control.h"

#include <gtest/gtest.h>

namespace kiln::agent {
namespace {

TEST(AgentFlowControl, SenderStopsAtTheWindow) {
  SendWindow window(1000);
  EXPECT_EQ(window.available(), 1000u);
  window.consume(600);
  window.consume(400);
  EXPECT_EQ(window.available(), 0u);
  ASSERT_TRUE(window.grant(250).has_value());
  EXPECT_EQ(window.available(), 250u);
}

TEST(AgentFlowControl, GrantBeyondTheWindowIsAProtocolError) {
  SendWindow window(1000);
  window.consume(100);
  auto granted = window.grant(101);
  ASSERT_FALSE(granted.has_value());
  EXPECT_EQ(granted.error().category(), ErrorCategory::kProtocol);
  EXPECT_EQ(window.available(), 900u);
}

TEST(AgentFlowControl, ReceiverRejectsDataBeyondCredit) {
  ReceiveWindow window(1000);
  ASSERT_TRUE(window.on_received(1000).has_value());
  auto over = window.on_received(1);
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().category(), ErrorCategory::kProtocol);
}

TEST(AgentFlowControl, GrantsAreBatchedToAQuarterWindow) {
  ReceiveWindow window(1000);
  ASSERT_TRUE(window.on_received(1000).has_value());
  EXPECT_EQ(window.unconsumed(), 1000u);
  EXPECT_EQ(window.on_consumed(100), 0u);
  EXPECT_EQ(window.on_consumed(100), 0u);
  EXPECT_EQ(window.on_consumed(50), 250u);
  EXPECT_EQ(window.unconsumed(), 750u);
  ASSERT_TRUE(window.on_received(250).has_value());
  EXPECT_FALSE(window.on_received(1).has_value());
}

TEST(AgentFlowControl, SenderAndReceiverStayInStep) {
  SendWindow sender(kInitialWindow);
  ReceiveWindow receiver(kInitialWindow);
  size_t moved = 0;
  // 8 MiB in uneven pieces: every grant the receiver emits must be accepted by the sender.
  while (moved < 8u << 20) {
    size_t piece = std::min<size_t>(sender.available(), 12345);
    ASSERT_GT(piece, 0u);
    sender.consume(piece);
    ASSERT_TRUE(receiver.on_received(piece).has_value());
    if (uint32_t grant = receiver.on_consumed(piece)) {
      ASSERT_TRUE(sender.grant(grant).has_value());
    }
    moved += piece;
  }
}

}  // namespace
}  // namespace kiln::agent

#include "daemon/event_bus.h"

#include <gtest/gtest.h>

#include <thread>

namespace kiln::daemon {
namespace {

TEST(EventBusTest, DeliversInOrderAfterASequenceNumber) {
  EventBus bus;
  bus.publish({.type = "vm", .action = "created", .id = "a"});
  bus.publish({.type = "vm", .action = "started", .id = "a"});
  auto all = bus.wait_after(0, std::chrono::milliseconds(0));
  ASSERT_EQ(all.size(), 2U);
  EXPECT_EQ(all[0].action, "created");
  EXPECT_EQ(all[1].action, "started");
  EXPECT_LT(all[0].seq, all[1].seq);
  EXPECT_EQ(bus.wait_after(all[1].seq, std::chrono::milliseconds(0)).size(), 0U);
}

TEST(EventBusTest, WaiterWakesOnPublish) {
  EventBus bus;
  std::thread publisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bus.publish({.type = "vm", .action = "stopped"});
  });
  auto events = bus.wait_after(0, std::chrono::seconds(10));
  publisher.join();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].action, "stopped");
}

TEST(EventBusTest, RingDropsTheOldest) {
  EventBus bus(3);
  for (int i = 0; i < 5; ++i) bus.publish({.type = "vm", .action = std::to_string(i)});
  auto events = bus.wait_after(0, std::chrono::milliseconds(0));
  ASSERT_EQ(events.size(), 3U);
  EXPECT_EQ(events[0].action, "2");
}

TEST(EventBusTest, CloseWakesWaiters) {
  EventBus bus;
  std::thread closer([&] { bus.close(); });
  auto events = bus.wait_after(0, std::chrono::seconds(30));
  closer.join();
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(bus.closed());
}

}  // namespace
}  // namespace kiln::daemon

#include "daemon/event_bus.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace kiln::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How long the wake-up tests let a reader wait. A reader woken by notify_all returns within milliseconds; one
// that is not sleeps all of it, so a test that returns in under half of it was woken.
constexpr auto kReaderTimeout = std::chrono::seconds(6);

// Blocks until a reader is asleep in bus.wait_after(): whatever the caller does next can only reach that
// reader by waking it (it already checked for events and found none).
void wait_until_a_reader_sleeps(const EventBus& bus) {
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (bus.waiting() == 0) {
    ASSERT_LT(steady_clock::now(), deadline) << "no reader ever waited";
    std::this_thread::sleep_for(milliseconds(1));
  }
}

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
    wait_until_a_reader_sleeps(bus);
    bus.publish({.type = "vm", .action = "stopped"});
  });
  auto start = steady_clock::now();
  auto events = bus.wait_after(0, std::chrono::duration_cast<milliseconds>(kReaderTimeout));
  auto waited = steady_clock::now() - start;
  publisher.join();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].action, "stopped");
  EXPECT_LT(waited, kReaderTimeout / 2) << "the reader was not woken by the publish; it timed out";
  EXPECT_EQ(bus.waiting(), 0U);
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
  std::thread closer([&] {
    wait_until_a_reader_sleeps(bus);
    bus.close();
  });
  auto start = steady_clock::now();
  auto events = bus.wait_after(0, std::chrono::duration_cast<milliseconds>(kReaderTimeout));
  auto waited = steady_clock::now() - start;
  closer.join();
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(bus.closed());
  EXPECT_LT(waited, kReaderTimeout / 2) << "the reader was not woken by close(); it timed out";
}

TEST(EventBusTest, ClosedBusReturnsAtOnce) {
  EventBus bus;
  bus.close();
  auto start = steady_clock::now();
  EXPECT_TRUE(bus.wait_after(0, std::chrono::duration_cast<milliseconds>(kReaderTimeout)).empty());
  EXPECT_LT(steady_clock::now() - start, kReaderTimeout / 2);
}

}  // namespace
}  // namespace kiln::daemon

// The Agent's wait for a host that comes and goes (kilnd restarts, a VM forked from a template), driven
// in-process through a fake channel whose wake fd is an eventfd: the agent must connect when woken, at
// once, and not poll while nothing happens.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "agent/agent.h"
#include "agent/client/agent_connection.h"

namespace kiln::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr auto kTimeout = std::chrono::seconds(30);

// What the test and the agent's channel share; the channel runs on the agent's thread.
struct FakePort {
  UniqueFd wake{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  std::mutex mutex;
  UniqueFd pending;  // the agent's end of the next host connection
  std::atomic<int> connects{0};

  // A host opens its side: like VIRTIO_CONSOLE_PORT_OPEN, this wakes the wake fd's waitqueue.
  UniqueFd host_arrives() {
    int ends[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    {
      std::lock_guard lock(mutex);
      pending.reset(ends[1]);
    }
    poke();
    return UniqueFd(ends[0]);
  }
  void poke() {
    uint64_t one = 1;
    EXPECT_EQ(::write(wake.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  }
};

class FakePortChannel : public HostChannel {
 public:
  explicit FakePortChannel(FakePort& port) : port_(port) {}
  Result<std::optional<UniqueFd>> connect() override {
    ++port_.connects;
    uint64_t count;
    (void)!::read(port_.wake.get(), &count, sizeof count);
    std::lock_guard lock(port_.mutex);
    if (!port_.pending) return std::optional<UniqueFd>{};
    KILN_TRY(set_nonblocking(port_.pending.get()));
    return std::optional<UniqueFd>(std::move(port_.pending));
  }
  bool reconnects() const override { return true; }
  int wake_fd() const override { return port_.wake.get(); }

 private:
  FakePort& port_;
};

TEST(AgentReconnect, HostArrivalWakesTheAgentAtOnceAndNothingPollsMeanwhile) {
  FakePort port;
  ASSERT_TRUE(port.wake.valid());
  std::optional<Result<AgentOutcome>> outcome;
  std::thread agent_thread([&] {
    auto agent = Agent::create(std::make_unique<FakePortChannel>(port));
    if (!agent) {
      outcome = std::move(agent).error();
      return;
    }
    outcome = (*agent)->run();
  });

  // No host: after the first look (and the one the edge-triggered watch reports when added) the agent
  // sleeps; the old 250 ms reconnect timer would have looked 5 times by now.
  std::this_thread::sleep_for(milliseconds(1200));
  EXPECT_LE(port.connects.load(), 3);

  for (int round = 0; round < 3; ++round) {
    // A host that opened and closed its side before the agent looked leaves nothing to connect to.
    port.poke();
    auto start = steady_clock::now();
    auto connection = AgentConnection::connect(port.host_arrives(), kTimeout);
    ASSERT_TRUE(connection.has_value()) << "round " << round << ": " << connection.error().message();
    auto elapsed = steady_clock::now() - start;
    // Well under the 2 s safety-net timer: the wakeup did it.
    EXPECT_LT(elapsed, milliseconds(1000))
        << "round " << round << ": " << std::chrono::duration_cast<milliseconds>(elapsed).count() << " ms";
    ASSERT_TRUE((*connection)->ping(kTimeout).has_value());
    if (round < 2) continue;  // dropping the connection: the host goes away, the agent waits again
    ASSERT_TRUE((*connection)->shutdown(false, kTimeout).has_value());
  }
  agent_thread.join();
  ASSERT_TRUE(outcome.has_value());
  ASSERT_TRUE(outcome->has_value()) << outcome->error().message();
  EXPECT_EQ((*outcome)->kind, AgentOutcome::Kind::kShutdown);
}

}  // namespace
}  // namespace kiln::agent

#include "engine/qemu/qemu_snapshot.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "engine/qemu/fake_qemu_test_support.h"

namespace kiln::engine::qemu {
namespace {

using namespace std::chrono_literals;

// The index of the first request that contains `text`, or requests.size().
size_t find_request(const std::vector<std::string>& requests, std::string_view text) {
  auto found = std::find_if(requests.begin(), requests.end(), [&](const std::string& request) {
    return request.find(text) != std::string::npos;
  });
  return static_cast<size_t>(found - requests.begin());
}

// QEMU's side of a load: answers by command, so a load that sends one request more or less fails the
// checks, instead of waiting for a MIGRATION event that a fixed script would never send.
std::string answer_load(const std::string& request) {
  if (request.find(R"("execute":"query-version")") != std::string::npos)
    return R"({"return": {"qemu": {"major": 7, "minor": 2, "micro": 22}}})";
  if (request.find(R"("execute":"migrate-incoming")") != std::string::npos)
    return R"({"return": {}})"
           "\r\n"
           R"({"event": "MIGRATION", "data": {"status": "completed"}, "timestamp": {}})";
  return R"({"return": {}})";
}

TEST(QemuSnapshot, LoadTurnsOffSelfAnnouncementsBeforeTheStreamIsRead) {
  auto pair = make_socket_pair();
  ASSERT_TRUE(pair);
  FakeQemu fake(std::move(pair->second), answer_load);
  {
    auto qmp = QmpClient::handshake(std::move(pair->first), 5s);
    ASSERT_TRUE(qmp) << qmp.error().message();
    auto child = ChildProcess::spawn({.argv = {"/bin/sleep", "600"},
                                      .stdin_mode = Stdio::kNull,
                                      .stdout_mode = Stdio::kNull,
                                      .stderr_mode = Stdio::kNull});
    ASSERT_TRUE(child) << child.error().message();
    MonitorProcess monitor = MonitorProcess::spawned(std::move(*child), false);  // killed when dropped
    PreparedRestore restore{.state_file = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                            .ignore_shared = true};
    restore.manifest.engine_version = "7.2.22";
    auto loaded = load_vm_state(*qmp, monitor, std::move(restore));
    EXPECT_TRUE(loaded) << loaded.error().message();
  }
  fake.join();  // its thread ends once our end of the monitor is closed
  const std::vector<std::string>& requests = fake.requests();
  size_t parameters = find_request(requests, R"("execute":"migrate-set-parameters")");
  ASSERT_LT(parameters, requests.size());
  EXPECT_NE(requests[parameters].find(R"("announce-rounds":0)"), std::string::npos) << requests[parameters];
  // QEMU arms its announce timers when the devices' state is loaded, from the parameters of that moment.
  size_t incoming = find_request(requests, R"("execute":"migrate-incoming")");
  EXPECT_LT(parameters, incoming);
  EXPECT_LT(incoming, find_request(requests, R"("execute":"cont")"));
  EXPECT_LT(find_request(requests, R"("execute":"cont")"), requests.size());
}

}  // namespace
}  // namespace kiln::engine::qemu

// QemuVm::swap_disk against a scripted QMP monitor: the commands it sends, and what it undoes when QEMU
// refuses the reopen. (tests/vm/engine_fork_test.cc swaps disks in a real guest.)
#include "engine/qemu/qemu_vm.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/temp_dir.h"
#include "engine/qemu/fake_qemu_test_support.h"

namespace kiln::engine::qemu {
namespace {

using namespace std::chrono_literals;

// QEMU's side: slot 1's protocol node is disk1-file-2 (an earlier swap left it); blockdev-reopen fails when
// `refuse_reopen`.
std::function<std::string(const std::string&)> monitor(bool refuse_reopen) {
  return [refuse_reopen](const std::string& request) -> std::string {
    if (request.find(R"("execute":"query-named-block-nodes")") != std::string::npos) {
      return R"({"return": [{"node-name": "disk0-file", "drv": "null-co"}, {"node-name": "disk0", "drv": "raw"},)"
             R"( {"node-name": "disk1-file-2", "drv": "file"}, {"node-name": "disk1", "drv": "raw"},)"
             R"( {"node-name": "disk10-file", "drv": "file"}]})";
    }
    if (refuse_reopen && request.find(R"("execute":"blockdev-reopen")") != std::string::npos)
      return R"({"error": {"class": "GenericError", "desc": "Permission conflict on node"}})";
    return R"({"return": {}})";
  };
}

std::vector<std::string> swap_into_slot_1(bool refuse_reopen, const std::string& disk, Result<void>& result) {
  auto pair = make_socket_pair();
  EXPECT_TRUE(pair);
  FakeQemu fake(std::move(pair->second), monitor(refuse_reopen));
  {
    auto qmp = QmpClient::handshake(std::move(pair->first), 5s);
    EXPECT_TRUE(qmp) << qmp.error().message();
    auto child = ChildProcess::spawn({.argv = {"/bin/sleep", "600"},
                                      .stdin_mode = Stdio::kNull,
                                      .stdout_mode = Stdio::kNull,
                                      .stderr_mode = Stdio::kNull});
    EXPECT_TRUE(child) << child.error().message();
    QemuVm vm(MonitorProcess::spawned(std::move(*child), false), std::move(*qmp), paths_for("/run/x"));
    vm.set_disk_slots({{.read_only = true, .bytes = 1 << 20}, {.read_only = false, .bytes = 1 << 20}});
    result = vm.swap_disk(1, {.path = disk});
  }
  fake.join();
  std::vector<std::string> requests = fake.requests();
  // The handshake's qmp_capabilities comes first; the rest is the swap's.
  EXPECT_FALSE(requests.empty());
  if (!requests.empty()) requests.erase(requests.begin());
  return requests;
}

TEST(QemuVmSwapDisk, AddsANewNodeReopensTheSlotOntoItAndDeletesTheOld) {
  auto dir = TempDir::create("kiln-qemu-vm-test-").value();
  std::string disk = dir.path() + "/layer.img";
  ASSERT_TRUE(write_file_atomic(disk, std::string(4096, 'x')));
  Result<void> swapped = ok();
  auto requests = swap_into_slot_1(false, disk, swapped);
  ASSERT_TRUE(swapped) << swapped.error().message();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_NE(requests[1].find(R"("execute":"blockdev-add")"), std::string::npos) << requests[1];
  EXPECT_NE(requests[1].find(R"("driver":"file")"), std::string::npos) << requests[1];
  EXPECT_NE(requests[1].find(R"("node-name":"disk1-file-3")"), std::string::npos) << requests[1];
  EXPECT_NE(requests[2].find(R"("execute":"blockdev-reopen")"), std::string::npos) << requests[2];
  EXPECT_NE(requests[2].find(R"("file":"disk1-file-3")"), std::string::npos) << requests[2];
  EXPECT_NE(requests[2].find(R"("node-name":"disk1")"), std::string::npos) << requests[2];
  EXPECT_NE(requests[2].find(R"("read-only":false)"), std::string::npos) << requests[2];
  EXPECT_NE(requests[3].find(R"("execute":"blockdev-del")"), std::string::npos) << requests[3];
  EXPECT_NE(requests[3].find(R"("node-name":"disk1-file-2")"), std::string::npos) << requests[3];
}

TEST(QemuVmSwapDisk, ARefusedReopenRemovesTheAddedNodeAndKeepsTheOld) {
  auto dir = TempDir::create("kiln-qemu-vm-test-").value();
  std::string disk = dir.path() + "/layer.img";
  ASSERT_TRUE(write_file_atomic(disk, std::string(4096, 'x')));
  Result<void> swapped = ok();
  auto requests = swap_into_slot_1(true, disk, swapped);
  ASSERT_FALSE(swapped);
  EXPECT_NE(swapped.error().message().find("put disk " + disk + " into disk slot 1"), std::string::npos)
      << swapped.error().message();
  EXPECT_NE(swapped.error().message().find("Permission conflict"), std::string::npos);
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_NE(requests[3].find(R"("execute":"blockdev-del")"), std::string::npos) << requests[3];
  EXPECT_NE(requests[3].find(R"("node-name":"disk1-file-3")"), std::string::npos) << requests[3];
}

TEST(QemuVmSwapDisk, AWrongDiskNeverReachesQemu) {
  auto dir = TempDir::create("kiln-qemu-vm-test-").value();
  std::string disk = dir.path() + "/big.img";
  ASSERT_TRUE(write_file_atomic(disk, std::string((1 << 20) + 512, 'x')));
  Result<void> swapped = ok();
  auto requests = swap_into_slot_1(false, disk, swapped);
  ASSERT_FALSE(swapped);
  EXPECT_EQ(swapped.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_TRUE(requests.empty()) << requests.front();
}

}  // namespace
}  // namespace kiln::engine::qemu

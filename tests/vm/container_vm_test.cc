// A container's process inside a real VM (QEMU; TCG here): the agent runs from the initramfs, whose root
// pivot_root cannot move, so this is where the MS_MOVE + chroot path of container_setup.cc runs. The
// container's root is built inside the guest from its own busybox.
#include <gtest/gtest.h>

#include "agent/agent_test_support.h"
#include "agent/client/agent_connection.h"
#include "common/temp_dir.h"
#include "engine/engine_factory.h"
#include "guest/guest_kit.h"

namespace kiln::engine {
namespace {

using namespace std::chrono_literals;

TEST(ContainerInVm, MainProcessIsPidOneInItsRootWithDockersDefaults) {
  auto dir = TempDir::create("kiln-container-vm-");
  ASSERT_TRUE(dir) << dir.error().message();
  auto kit = guest::resolve_guest_kit({});
  ASSERT_TRUE(kit) << kit.error().message();
  auto engine = make_engine({.name = "qemu"});
  ASSERT_TRUE(engine) << engine.error().message();
  auto vm = (*engine)->launch({.name = "container",
                               .memory_mib = 256,
                               .kernel = kit->kernel,
                               .initrd = kit->initramfs,
                               .runtime_dir = dir->path()});
  ASSERT_TRUE(vm) << vm.error().message();
  auto channel = (*vm)->connect_agent();
  ASSERT_TRUE(channel) << channel.error().message();
  auto agent = agent::AgentConnection::connect(std::move(*channel), 180s);
  ASSERT_TRUE(agent) << agent.error().message();
  ASSERT_TRUE((*agent)->has_capability("container"));

  auto prepared = agent::testing::run(
      **agent, {.argv = {"sh", "-c",
                         "mkdir -p /c/bin /c/etc && cp /bin/busybox /c/bin/ && ln -s busybox /c/bin/sh && "
                         "echo in-container > /c/etc/marker"}});
  ASSERT_TRUE(prepared) << prepared.error().message();
  ASSERT_EQ(prepared->status, ExitStatus::exited(0)) << prepared->err;

  agent::ContainerSpec container{.root = "/c", .hostname = "box", .capabilities = {"CAP_CHOWN", "CAP_KILL"}};
  auto output = agent::testing::run(
      **agent, {.argv = {"/bin/busybox", "sh", "-c",
                         "echo $$; /bin/busybox hostname; /bin/busybox cat /etc/marker; echo /proc/[0-9]*; "
                         "/bin/busybox grep ^CapBnd /proc/self/status; test -e /init && echo vm-root-visible "
                         "|| echo isolated"},
                .env = std::vector<std::string>{"PATH=/bin"},
                .container = container});
  ASSERT_TRUE(output) << output.error().message();
  EXPECT_EQ(output->status, ExitStatus::exited(0)) << output->err;
  EXPECT_EQ(output->out, "1\nbox\nin-container\n/proc/1\nCapBnd:\t0000000000000021\nisolated\n");
  (void)(*vm)->kill();
}

}  // namespace
}  // namespace kiln::engine

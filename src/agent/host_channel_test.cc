#include "agent/host_channel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/temp_dir.h"

namespace kiln::agent {
namespace {

void add_port(const std::string& sysfs, const std::string& device, std::string_view name) {
  ASSERT_EQ(::mkdir((sysfs + "/" + device).c_str(), 0755), 0);
  ASSERT_TRUE(write_file_atomic(sysfs + "/" + device + "/name", name).has_value());
}

TEST(AgentHostChannel, FindsThePortByName) {
  auto sysfs = TempDir::create();
  ASSERT_TRUE(sysfs.has_value());
  add_port(sysfs->path(), "vport0p0", "");  // the console port has an empty name
  add_port(sysfs->path(), "vport0p1", "org.qemu.guest_agent.0\n");
  add_port(sysfs->path(), "vport1p1", "kiln.agent\n");
  auto found = find_virtio_port(sysfs->path(), kAgentPortName);
  ASSERT_TRUE(found.has_value()) << found.error().message();
  EXPECT_EQ(*found, "vport1p1");
}

TEST(AgentHostChannel, NoPortYetIsNotAnError) {
  auto sysfs = TempDir::create();
  ASSERT_TRUE(sysfs.has_value());
  EXPECT_EQ(*find_virtio_port(sysfs->path() + "/missing", kAgentPortName), std::nullopt);
  add_port(sysfs->path(), "vport0p1", "something.else");
  EXPECT_EQ(*find_virtio_port(sysfs->path(), kAgentPortName), std::nullopt);
  VirtioPortChannel channel(sysfs->path(), "/nonexistent");
  auto connected = channel.connect();
  ASSERT_TRUE(connected.has_value());
  EXPECT_FALSE(connected->has_value());
}

// A pty slave stands in for the port: like virtio_console, it polls POLLHUP once the other side is gone.
TEST(AgentHostChannel, HostAwayMeansWaitNotEof) {
  auto sysfs = TempDir::create();
  auto dev = TempDir::create();
  ASSERT_TRUE(sysfs.has_value() && dev.has_value());
  add_port(sysfs->path(), "vport0p1", "kiln.agent");
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(master.valid());
  ASSERT_EQ(::grantpt(master.get()), 0);
  ASSERT_EQ(::unlockpt(master.get()), 0);
  char pts[64];
  ASSERT_EQ(::ptsname_r(master.get(), pts, sizeof pts), 0);
  ASSERT_EQ(::symlink(pts, (dev->path() + "/vport0p1").c_str()), 0);

  VirtioPortChannel channel(sysfs->path(), dev->path());
  auto first = channel.connect();
  ASSERT_TRUE(first.has_value()) << first.error().message();
  ASSERT_TRUE(first->has_value());
  master.reset();  // the host goes away
  auto again = channel.connect();
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_FALSE(again->has_value());
  EXPECT_TRUE(channel.reconnects());
}

}  // namespace
}  // namespace kiln::agent

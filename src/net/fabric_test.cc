#include "net/fabric.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "common/child_process.h"
#include "common/temp_dir.h"
#include "net/links.h"

namespace kiln::net {
namespace {

const LinkInfo* find_link(const std::vector<LinkInfo>& links, const std::string& name) {
  auto found =
      std::find_if(links.begin(), links.end(), [&](const LinkInfo& link) { return link.name == name; });
  return found == links.end() ? nullptr : &*found;
}

class FabricTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    dir_.emplace(std::move(*TempDir::create("kiln-fabric")));
    config_ = {
        .namespace_path = dir_->path() + "/netns", .state_dir = dir_->path() + "/state", .outbound = false};
  }
  void TearDown() override {
    if (!config_.namespace_path.empty()) (void)::umount2(config_.namespace_path.c_str(), MNT_DETACH);
  }
  std::optional<TempDir> dir_;
  FabricConfig config_;
};

TEST_F(FabricTest, BridgesAndTapsLiveInKilnsNamespaceNotTheHosts) {
  auto fabric = Fabric::open(config_);
  ASSERT_TRUE(fabric) << fabric.error().message();
  ASSERT_TRUE((*fabric)->ensure_bridge("kbtest0", "172.29.0.1/16", false));
  std::string tap_name;
  auto tap = (*fabric)->open_tap("kbtest0", &tap_name);
  ASSERT_TRUE(tap) << tap.error().message();
  EXPECT_TRUE(tap_name.starts_with("ktap"));

  auto links = (*fabric)->links();
  ASSERT_TRUE(links) << links.error().message();
  const LinkInfo* bridge = find_link(*links, "kbtest0");
  ASSERT_NE(bridge, nullptr);
  EXPECT_EQ(bridge->kind, "bridge");
  EXPECT_TRUE(bridge->up);
  EXPECT_EQ(bridge->ipv4, std::vector<std::string>{"172.29.0.1/16"});
  const LinkInfo* tap_link = find_link(*links, tap_name);
  ASSERT_NE(tap_link, nullptr);
  EXPECT_EQ(tap_link->kind, "tun");
  EXPECT_EQ(tap_link->master, "kbtest0");
  const LinkInfo* loopback = find_link(*links, "lo");
  ASSERT_NE(loopback, nullptr);
  EXPECT_TRUE(loopback->up);
  // The host's own namespace got none of it.
  EXPECT_FALSE(links::exists("kbtest0"));
  EXPECT_FALSE(links::exists(tap_name));

  // A tap lives as long as its fd: closing it (the monitor exiting) removes it.
  tap->reset();
  links = (*fabric)->links();
  ASSERT_TRUE(links);
  EXPECT_EQ(find_link(*links, tap_name), nullptr);

  ASSERT_TRUE((*fabric)->remove_bridge("kbtest0"));
  ASSERT_TRUE((*fabric)->remove_bridge("kbtest0"));  // absent: fine
  links = (*fabric)->links();
  ASSERT_TRUE(links);
  EXPECT_EQ(find_link(*links, "kbtest0"), nullptr);
}

TEST_F(FabricTest, ADetachedTapJoinsABridgeAndLeavesItAgain) {
  auto fabric = Fabric::open(config_);
  ASSERT_TRUE(fabric) << fabric.error().message();
  ASSERT_TRUE((*fabric)->ensure_bridge("kbtest2", "172.29.2.1/24", false));
  std::string tap_name;
  auto tap = (*fabric)->open_detached_tap(&tap_name);
  ASSERT_TRUE(tap) << tap.error().message();
  auto master_of_tap = [&]() -> std::string {
    auto links = (*fabric)->links();
    if (!links) return "<error>";
    const LinkInfo* link = find_link(*links, tap_name);
    return link ? link->master : "<gone>";
  };
  EXPECT_EQ(master_of_tap(), "");
  ASSERT_TRUE((*fabric)->attach_tap(tap_name, "kbtest2"));
  EXPECT_EQ(master_of_tap(), "kbtest2");
  ASSERT_TRUE((*fabric)->detach_tap(tap_name, "kbtest2"));
  EXPECT_EQ(master_of_tap(), "");
  ASSERT_TRUE((*fabric)->detach_tap(tap_name, "kbtest2"));  // not on it: fine
  EXPECT_FALSE((*fabric)->attach_tap(tap_name, "nosuchbridge"));
  EXPECT_FALSE((*fabric)->attach_tap("bad/name", "kbtest2"));
  tap->reset();
  ASSERT_TRUE((*fabric)->detach_tap(tap_name, "kbtest2"));  // gone with its holder: fine
  ASSERT_TRUE((*fabric)->remove_bridge("kbtest2"));
}

TEST_F(FabricTest, SocketsMadeInsideReachTheBridgeAddressTheHostCannot) {
  auto fabric = Fabric::open(config_);
  ASSERT_TRUE(fabric) << fabric.error().message();
  ASSERT_TRUE((*fabric)->ensure_bridge("kbtest1", "172.29.1.1/24", true));
  auto server = (*fabric)->socket(AF_INET, SOCK_DGRAM);
  ASSERT_TRUE(server) << server.error().message();
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(5353);
  ::inet_pton(AF_INET, "172.29.1.1", &address.sin_addr);
  // Binding to the bridge's address works inside; in the host's namespace that address does not exist.
  ASSERT_EQ(::bind(server->get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0) << errno;
  UniqueFd host_socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_NE(::bind(host_socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
}

TEST_F(FabricTest, ReopeningJoinsThePinnedNamespace) {
  {
    auto fabric = Fabric::open(config_);
    ASSERT_TRUE(fabric) << fabric.error().message();
    ASSERT_TRUE((*fabric)->ensure_bridge("kbtest2", "172.29.2.1/24", false));
  }
  // A restarted kilnd finds its bridges (and the VMs' taps) where it left them.
  auto again = Fabric::open(config_);
  ASSERT_TRUE(again) << again.error().message();
  auto links = (*again)->links();
  ASSERT_TRUE(links);
  EXPECT_NE(find_link(*links, "kbtest2"), nullptr);
  // And `ip` sees the same namespace through the pin (what tests and operators use).
  auto listed =
      run_command_checked({"nsenter", "--net=" + config_.namespace_path, "ip", "-o", "link", "show"});
  ASSERT_TRUE(listed) << listed.error().message();
  EXPECT_NE(listed->find("kbtest2"), std::string::npos);
}

// Outbound: a connection made inside Kiln's namespace to the NAT's gateway reaches a server on the host's
// loopback, through slirp4netns and the namespace's masquerade, without any host route or rule.
TEST_F(FabricTest, OutboundNatReachesTheHostsLoopbackThroughItsGateway) {
  config_.outbound = true;
  auto fabric = Fabric::open(config_);
  ASSERT_TRUE(fabric) << fabric.error().message();
  UniqueFd server(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(server.get(), 4), 0);
  socklen_t length = sizeof(address);
  ::getsockname(server.get(), reinterpret_cast<sockaddr*>(&address), &length);

  auto client = (*fabric)->socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(client);
  sockaddr_in gateway = address;
  ::inet_pton(AF_INET, "10.0.2.2", &gateway.sin_addr);
  EXPECT_EQ(::connect(client->get(), reinterpret_cast<sockaddr*>(&gateway), sizeof(gateway)), 0) << errno;
  UniqueFd accepted(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
  // Opening again finds the running NAT instead of starting a second one.
  auto again = Fabric::open(config_);
  EXPECT_TRUE(again) << again.error().message();
  auto nats = run_command({"pgrep", "-f", config_.namespace_path});
  ASSERT_TRUE(nats);
  EXPECT_EQ(std::count(nats->stdout_text.begin(), nats->stdout_text.end(), '\n'), 1) << nats->stdout_text;
  (void)run_command({"pkill", "-f", config_.namespace_path});
}

TEST_F(FabricTest, BadBridgeNamesAreRefused) {
  auto fabric = Fabric::open(config_);
  ASSERT_TRUE(fabric);
  EXPECT_FALSE((*fabric)->ensure_bridge("a-name-longer-than-15", "172.29.3.1/24", false));
  EXPECT_FALSE((*fabric)->ensure_bridge("kbtest3", "172.29.3.1", false));
  EXPECT_FALSE((*fabric)->open_tap("nosuchbridge"));
}

}  // namespace
}  // namespace kiln::net

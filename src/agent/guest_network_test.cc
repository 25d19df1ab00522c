#include "agent/guest_network.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "common/child_process.h"
#include "common/temp_dir.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;

// A /sys/class/net look-alike in a directory of the test's: each interface with its MAC and driver.
class FakeSysClassNet {
 public:
  FakeSysClassNet() : dir_(TempDir::create("kiln-sysnet").value()) {}
  FakeSysClassNet& add(const std::string& name, const std::string& mac,
                       const std::string& driver = "virtio_net") {
    fs::create_directories(root() + "/drivers/" + driver);
    fs::create_directories(root() + "/" + name + "/device");
    std::ofstream(root() + "/" + name + "/address") << mac << "\n";
    fs::create_directory_symlink(root() + "/drivers/" + driver, root() + "/" + name + "/device/driver");
    return *this;
  }
  std::string root() const { return dir_.path() + "/net"; }

 private:
  TempDir dir_;
};

std::string no_device_macs(const std::string& /*interface*/) {
  return {};
}

TEST(GuestNetwork, VirtioInterfacesInNaturalOrderOthersIgnored) {
  FakeSysClassNet sys;
  std::string root = sys.root();
  sys.add("eth10", "52:54:00:12:34:60");
  sys.add("eth2", "52:54:00:12:34:58");
  sys.add("eth0", "52:54:00:12:34:56");
  sys.add("dummy0", "aa:bb:cc:dd:ee:ff", "dummy");
  EXPECT_EQ(virtio_net_interfaces(root), (std::vector<std::string>{"eth0", "eth2", "eth10"}));
}

TEST(GuestNetwork, ConfigsGoToTheInterfaceWithTheirMacFirstThenInOrder) {
  FakeSysClassNet sys;
  std::string root = sys.root();
  sys.add("eth0", "52:54:00:12:34:56");
  sys.add("eth1", "02:42:AC:12:00:05");
  sys.add("eth2", "52:54:00:12:34:58");
  std::vector<InterfaceConfig> configs = {{.mac = "02:42:ac:11:00:02", .address = "172.17.0.2/16"},
                                          {.mac = "02:42:ac:12:00:05", .address = "172.18.0.5/16"}};
  auto chosen = interfaces_for(configs, root, no_device_macs);
  ASSERT_TRUE(chosen) << chosen.error().message();
  EXPECT_EQ(*chosen, (std::vector<std::string>{"eth0", "eth1"}));

  configs.push_back({.mac = "02:42:ac:13:00:02", .address = "172.19.0.2/16"});
  configs.push_back({.mac = "02:42:ac:14:00:02", .address = "172.20.0.2/16"});
  auto too_many = interfaces_for(configs, root, no_device_macs);
  ASSERT_FALSE(too_many);
  EXPECT_NE(too_many.error().message().find("3 network interface(s), the host configures 4"),
            std::string::npos);
}

TEST(GuestNetwork, AConfigWithADeviceMacGetsThatInterfaceWhateverItsCurrentMac) {
  FakeSysClassNet sys;
  std::string root = sys.root();
  // eth0's device is slot 2's (the kernel probed the devices in another order than the host made them).
  sys.add("eth0", "02:42:ac:11:00:02");
  sys.add("eth1", "52:54:00:6b:00:01");
  sys.add("eth2", "02:42:ac:12:00:02");
  std::map<std::string, std::string> device_macs = {
      {"eth0", "52:54:00:6b:00:02"}, {"eth1", "52:54:00:6b:00:01"}, {"eth2", "52:54:00:6b:00:00"}};
  auto device_mac = [&](const std::string& interface) { return device_macs[interface]; };
  // A running VM joining a network on its spare slot 2, whose interface already carries slot 0's address.
  std::vector<InterfaceConfig> configs = {
      {.mac = "02:42:ac:13:00:02", .address = "172.19.0.2/16", .device_mac = "52:54:00:6B:00:02"},
      {.mac = "02:42:ac:12:00:02", .address = "172.18.0.2/16"},
  };
  auto chosen = interfaces_for(configs, root, device_mac);
  ASSERT_TRUE(chosen) << chosen.error().message();
  EXPECT_EQ(*chosen, (std::vector<std::string>{"eth0", "eth2"}));
  auto missing = interfaces_for(
      {{.mac = "02:42:ac:11:00:02", .address = "172.18.0.2/16", .device_mac = "52:54:00:6b:00:03"}}, root,
      device_mac);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("no network interface with device address 52:54:00:6b:00:03"),
            std::string::npos);
  // Taking an interface down needs its device address, not a MAC or address.
  EXPECT_TRUE(validate_interface_config({.device_mac = "52:54:00:6b:00:01", .down = true}));
  EXPECT_FALSE(validate_interface_config({.down = true}));
}

TEST(GuestNetwork, BadConfigsAreRefusedBeforeAnythingChanges) {
  for (InterfaceConfig bad :
       {InterfaceConfig{.mac = "02:42:ac:11:00", .address = "172.17.0.2/16"},
        InterfaceConfig{.mac = "03:42:ac:11:00:02", .address = "172.17.0.2/16"},
        InterfaceConfig{.mac = "02:42:ac:11:00:02", .address = "172.17.0.2"},
        InterfaceConfig{.mac = "02:42:ac:11:00:02", .address = "172.17.0.2/33"},
        InterfaceConfig{.mac = "02:42:ac:11:00:02", .address = "172.17.0.2/16", .gateway = "10.0.0.1"},
        InterfaceConfig{.mac = "02:42:ac:11:00:02", .address = "172.17.0.2/16", .mtu = 20}}) {
    EXPECT_FALSE(configure_interface("lo", bad, false)) << bad.mac << " " << bad.address;
  }
}

// The real ioctls, on a veth interface in a network namespace of the test's own (never the host's).
TEST(GuestNetwork, ConfiguresMacAddressMtuAndDefaultRoute) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespace)";
  std::string failure;
  std::string addresses;
  std::string routes;
  std::string link;
  std::thread inside([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      failure = "unshare";
      return;
    }
    // Processes spawned from this thread are in its namespace.
    if (!run_command_checked({"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"}) ||
        !run_command_checked({"ip", "link", "set", "peer0", "up"})) {
      failure = "ip link add";
      return;
    }
    InterfaceConfig config{
        .mac = "02:42:ac:11:00:07", .address = "172.17.0.7/16", .gateway = "172.17.0.1", .mtu = 1400};
    auto done = configure_interface("eth0", config, true);
    if (!done) {
      failure = done.error().message();
      return;
    }
    // Twice: a reconfiguration replaces the default route instead of failing on it.
    done = configure_interface("eth0", config, true);
    if (!done) {
      failure = "again: " + done.error().message();
      return;
    }
    addresses = run_command_checked({"ip", "-o", "-4", "addr", "show", "eth0"}).value_or("");
    routes = run_command_checked({"ip", "route"}).value_or("");
    link = run_command_checked({"ip", "-o", "link", "show", "eth0"}).value_or("");
  });
  inside.join();
  ASSERT_EQ(failure, "");
  EXPECT_NE(addresses.find("inet 172.17.0.7/16"), std::string::npos) << addresses;
  EXPECT_NE(routes.find("default via 172.17.0.1 dev eth0"), std::string::npos) << routes;
  EXPECT_NE(link.find("link/ether 02:42:ac:11:00:07"), std::string::npos) << link;
  EXPECT_NE(link.find("mtu 1400"), std::string::npos) << link;
  EXPECT_NE(link.find("UP"), std::string::npos) << link;
}

// A VM leaving a network: its interface loses its address and goes down; another one takes the default
// route when told to.
TEST(GuestNetwork, TakingAnInterfaceDownRemovesItsAddress) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespace)";
  std::string failure;
  std::string addresses;
  std::string routes;
  std::thread inside([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      failure = "unshare";
      return;
    }
    for (std::string name : {"eth0", "eth1"}) {
      if (!run_command_checked({"ip", "link", "add", name, "type", "veth", "peer", "name", "p" + name}) ||
          !run_command_checked({"ip", "link", "set", "p" + name, "up"})) {
        failure = "ip link add";
        return;
      }
    }
    InterfaceConfig first{.mac = "02:42:ac:11:00:07", .address = "172.17.0.7/16", .gateway = "172.17.0.1"};
    InterfaceConfig second{.mac = "02:42:ac:12:00:07", .address = "172.18.0.7/16", .gateway = "172.18.0.1"};
    for (auto* done : {&first, &second}) {
      auto configured = configure_interface(done == &first ? "eth0" : "eth1", *done, done == &first);
      if (!configured) {
        failure = configured.error().message();
        return;
      }
    }
    auto down = take_down_interface("eth0");
    if (!down) {
      failure = down.error().message();
      return;
    }
    second.default_route = true;
    auto routed = configure_interface("eth1", second, true);
    if (!routed) {
      failure = routed.error().message();
      return;
    }
    addresses = run_command_checked({"ip", "-o", "-4", "addr"}).value_or("");
    routes = run_command_checked({"ip", "route"}).value_or("");
  });
  inside.join();
  ASSERT_EQ(failure, "");
  EXPECT_EQ(addresses.find("172.17.0.7"), std::string::npos) << addresses;
  EXPECT_NE(addresses.find("inet 172.18.0.7/16"), std::string::npos) << addresses;
  EXPECT_NE(routes.find("default via 172.18.0.1 dev eth1"), std::string::npos) << routes;
  EXPECT_EQ(routes.find("172.17."), std::string::npos) << routes;
}

}  // namespace
}  // namespace kiln::agent

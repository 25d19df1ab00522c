// Guest NICs against real VMs (QEMU, TCG here), inside a network namespace of the test's own (net::Fabric):
// a cold-booted VM and a VM forked from a template with a NIC both take the address, MAC and route the
// host gives them, answer the bridge, take connections from Kiln's namespace, and reach the host's loopback
// through the outbound NAT. Nothing is configured in the host's own namespace.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "agent/client/agent_connection.h"
#include "common/child_process.h"
#include "common/temp_dir.h"
#include "engine/engine_factory.h"
#include "engine/template_guest.h"
#include "guest/guest_kit.h"
#include "guest_command.h"
#include "net/fabric.h"

namespace kiln::engine {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kBridge = "kbvmtest0";

Result<std::string> run(agent::AgentConnection& agent, const std::string& script) {
  return vm_tests::run_in_guest(agent, script);
}

class EngineNetwork : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, taps)";
    auto kit = guest::resolve_guest_kit({});
    ASSERT_TRUE(kit) << kit.error().message();
    kit_ = *kit;
    auto engine = make_engine({.name = "qemu"});
    ASSERT_TRUE(engine) << engine.error().message();
    engine_ = std::move(*engine);
    auto dir = TempDir::create("kiln-netvm-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    config_ = {.namespace_path = dir_->path() + "/netns", .state_dir = dir_->path() + "/net"};
    auto fabric = net::Fabric::open(config_);
    ASSERT_TRUE(fabric) << fabric.error().message();
    fabric_ = std::move(*fabric);
    ASSERT_TRUE(fabric_->ensure_bridge(kBridge, "172.30.5.1/24", false));
  }
  void TearDown() override {
    fabric_.reset();
    if (!config_.namespace_path.empty()) {
      (void)run_command({"pkill", "-f", config_.namespace_path});  // the outbound NAT
      (void)::umount2(config_.namespace_path.c_str(), MNT_DETACH);
    }
  }

  VmSpec spec(const std::string& name, const std::string& mac) {
    std::string runtime = dir_->path() + "/" + name;
    fs::create_directories(runtime);
    auto tap = fabric_->open_tap(kBridge);
    EXPECT_TRUE(tap) << tap.error().message();
    return {.name = name,
            .memory_mib = 256,
            .kernel = kit_.kernel,
            .initrd = kit_.initramfs,
            .runtime_dir = runtime,
            .nics = {{.mac = mac, .tap = std::make_shared<const UniqueFd>(std::move(*tap))}},
            .die_with_launcher = true};
  }

  std::unique_ptr<agent::AgentConnection> connect(VmInstance& vm) {
    auto channel = vm.connect_agent();
    EXPECT_TRUE(channel) << channel.error().message();
    if (!channel) return nullptr;
    auto connection = agent::AgentConnection::connect(std::move(*channel), 90s);
    EXPECT_TRUE(connection) << connection.error().message();
    return connection ? std::move(*connection) : nullptr;
  }

  // From inside Kiln's namespace: connects to ip:port and reads what the guest's server says.
  std::string read_from_guest(const std::string& ip, uint16_t port) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto socket = fabric_->socket(AF_INET, SOCK_STREAM);
      if (!socket) return "socket: " + socket.error().message();
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(port);
      ::inet_pton(AF_INET, ip.c_str(), &address.sin_addr);
      if (::connect(socket->get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        std::this_thread::sleep_for(200ms);  // the guest's server may not listen yet
        continue;
      }
      std::string out;
      char buffer[256];
      ssize_t n;
      while ((n = ::read(socket->get(), buffer, sizeof(buffer))) > 0)
        out.append(buffer, static_cast<size_t>(n));
      return out;
    }
    return "never connected";
  }

  // Configures, then checks the guest from both sides.
  void expect_reachable(VmInstance& vm, agent::AgentConnection& agent, const std::string& ip,
                        const std::string& mac) {
    auto link = run(agent, "ip -o link show eth0; ip -o -4 addr show eth0; ip route");
    ASSERT_TRUE(link) << link.error().message();
    EXPECT_NE(link->find("link/ether " + mac), std::string::npos) << *link;
    EXPECT_NE(link->find("inet " + ip + "/24"), std::string::npos) << *link;
    EXPECT_NE(link->find("default via 172.30.5.1 dev eth0"), std::string::npos) << *link;
    auto pinged = run(agent, "ping -c 1 -W 5 172.30.5.1");
    EXPECT_TRUE(pinged) << pinged.error().message() << vm.console_tail();
    auto served = agent.start_process({.argv = {"sh", "-c", "echo hello-from-" + ip + " | nc -l -p 7000"}});
    ASSERT_TRUE(served) << served.error().message();
    std::string said;
    std::thread reader([&] { said = read_from_guest(ip, 7000); });
    auto deadline = Clock::now() + 60s;
    while (said.empty() && Clock::now() < deadline) (void)agent.pump(100ms);
    reader.join();
    EXPECT_EQ(said, "hello-from-" + ip + "\n");
  }

  guest::GuestKit kit_;
  std::unique_ptr<Engine> engine_;
  std::optional<TempDir> dir_;
  net::FabricConfig config_;
  std::unique_ptr<net::Fabric> fabric_;
};

TEST_F(EngineNetwork, ColdBootedVmTakesItsAddressAndIsReachable) {
  auto vm = engine_->launch(spec("cold", "02:42:ac:1e:05:02"));
  ASSERT_TRUE(vm) << vm.error().message();
  auto agent = connect(**vm);
  ASSERT_TRUE(agent);
  auto configured = agent->configure_network(
      {.interfaces = {{.mac = "02:42:ac:1e:05:02", .address = "172.30.5.2/24", .gateway = "172.30.5.1"}}});
  ASSERT_TRUE(configured) << configured.error().message();
  expect_reachable(**vm, *agent, "172.30.5.2", "02:42:ac:1e:05:02");

  // Outbound: through the NAT's gateway to a server on the host's loopback.
  UniqueFd server(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(server.get(), 4), 0);
  socklen_t length = sizeof(address);
  ::getsockname(server.get(), reinterpret_cast<sockaddr*>(&address), &length);
  std::thread answer([&] {
    UniqueFd client(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client) (void)::write(client.get(), "from-the-host\n", 14);
  });
  auto fetched = run(*agent, fmt::format("nc 10.0.2.2 {} </dev/null", ntohs(address.sin_port)));
  if (!fetched) ::shutdown(server.get(), SHUT_RDWR);
  answer.join();
  ASSERT_TRUE(fetched) << fetched.error().message();
  EXPECT_EQ(*fetched, "from-the-host\n");
}

TEST_F(EngineNetwork, ForkedVmTakesItsOwnMacAndAddressFromCloneInit) {
  auto template_dir = TempDir::create("kiln-netvm-template-");
  ASSERT_TRUE(template_dir);
  VmSpec base = spec("template", "");
  auto scratch_tap = fabric_->open_detached_tap();
  ASSERT_TRUE(scratch_tap);
  base.nics = {{.tap = std::make_shared<const UniqueFd>(std::move(*scratch_tap))}};
  auto built = engine_->build_template(base, template_dir->path(), [&](VmInstance& vm) -> Result<void> {
    return settle_template_guest(vm, 120s);
  });
  ASSERT_TRUE(built) << built.error().message();

  for (int i = 0; i < 2; ++i) {
    std::string ip = fmt::format("172.30.5.{}", 10 + i);
    std::string mac = fmt::format("02:42:ac:1e:05:{:02x}", 10 + i);
    VmSpec clone = spec(fmt::format("clone{}", i), mac);
    auto vm = engine_->fork(*built, clone);
    ASSERT_TRUE(vm) << vm.error().message();
    auto agent = connect(**vm);
    ASSERT_TRUE(agent);
    auto identity =
        agent->clone_init({.hostname = fmt::format("clone{}", i),
                           .network = {{.mac = mac, .address = ip + "/24", .gateway = "172.30.5.1"}}});
    ASSERT_TRUE(identity) << identity.error().message();
    expect_reachable(**vm, *agent, ip, mac);
  }
}

}  // namespace
}  // namespace kiln::engine

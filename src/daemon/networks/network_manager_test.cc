// NetworkManager on a real kiln.db with a fake fabric, DNS server and port proxy: dockerd's IPAM (default
// pools in turn, user subnets, gateways, ranges) and its messages, nothing half-created when a step fails,
// networks and reservations across a reopen, the address table under concurrent starts, and the bridge,
// tap and DNS calls it makes.
#include "daemon/networks/network_manager.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <set>
#include <thread>

#include "common/temp_dir.h"
#include "daemon/state/schema.h"

namespace kiln::daemon::networks {
namespace {

class FakeFabric : public NetworkFabric {
 public:
  Result<void> ensure_bridge(const std::string& name, const std::string& gateway_cidr,
                             bool internal) override {
    std::lock_guard lock(mutex);
    calls.push_back("ensure " + name + " " + gateway_cidr + (internal ? " internal" : ""));
    if (fail_bridges.contains(name)) return Error::unavailable("bridge refused");
    made[name] = gateway_cidr;
    return ok();
  }
  Result<void> remove_bridge(const std::string& name) override {
    std::lock_guard lock(mutex);
    calls.push_back("remove " + name);
    made.erase(name);
    return ok();
  }
  Result<UniqueFd> open_tap(const std::string& bridge, std::string* name) override {
    std::lock_guard lock(mutex);
    if (!made.contains(bridge)) return Error::not_found("no bridge " + bridge);
    if (fail_taps) return Error::unavailable("tap refused");
    ++taps;
    if (name != nullptr) *name = "ktap" + std::to_string(taps);
    on_bridge["ktap" + std::to_string(taps)] = bridge;
    return UniqueFd(::eventfd(0, EFD_CLOEXEC));
  }
  Result<UniqueFd> open_detached_tap(std::string* name) override {
    std::lock_guard lock(mutex);
    if (fail_taps) return Error::unavailable("tap refused");
    ++taps;
    if (name != nullptr) *name = "ktap" + std::to_string(taps);
    on_bridge["ktap" + std::to_string(taps)] = "";
    return UniqueFd(::eventfd(0, EFD_CLOEXEC));
  }
  Result<void> attach_tap(const std::string& tap, const std::string& bridge) override {
    std::lock_guard lock(mutex);
    if (!made.contains(bridge)) return Error::not_found("no bridge " + bridge);
    if (!on_bridge.contains(tap)) return Error::not_found("no tap " + tap);
    on_bridge[tap] = bridge;
    return ok();
  }
  Result<void> detach_tap(const std::string& tap, const std::string& bridge) override {
    std::lock_guard lock(mutex);
    if (auto it = on_bridge.find(tap); it != on_bridge.end() && it->second == bridge) it->second.clear();
    return ok();
  }
  Result<UniqueFd> bound_socket(int type, const std::string& ipv4, uint16_t port) override {
    std::lock_guard lock(mutex);
    calls.push_back("socket " + ipv4 + ":" + std::to_string(port) + (type == SOCK_STREAM ? " tcp" : " udp"));
    return UniqueFd(::eventfd(0, EFD_CLOEXEC));
  }
  Result<std::vector<std::string>> bridges_list() {
    std::lock_guard lock(mutex);
    std::vector<std::string> names;
    for (const auto& [name, cidr] : made) names.push_back(name);
    return names;
  }
  Result<std::vector<std::string>> bridges() override { return bridges_list(); }

  std::mutex mutex;
  std::map<std::string, std::string> made;
  std::vector<std::string> calls;
  std::set<std::string> fail_bridges;
  bool fail_taps = false;
  int taps = 0;
  std::map<std::string, std::string> on_bridge;  // tap -> its bridge ("" : none)
};

class FakeDns : public DnsService {
 public:
  Result<ServiceHandle> serve(UniqueFd udp, UniqueFd tcp, NameLookup lookup) override {
    if (!udp || !tcp) return Error::internal("no sockets");
    if (fail) return Error::unavailable("dns refused");
    lookups.push_back(std::move(lookup));
    auto live = std::make_shared<int>(0);
    zones.push_back(live);
    return ServiceHandle(live);
  }
  size_t running() const {
    return std::count_if(zones.begin(), zones.end(), [](const auto& zone) { return !zone.expired(); });
  }
  std::vector<NameLookup> lookups;
  std::vector<std::weak_ptr<int>> zones;
  bool fail = false;
};

class FakeProxy : public PortPublisher {
 public:
  Result<ProxyListener> listen(const ProxySpec& spec) override {
    std::lock_guard lock(mutex);
    uint16_t port = spec.host_port == 0 ? next_free++ : spec.host_port;
    while (port < spec.host_port_last && listeners.contains(port) && !listeners[port].expired()) ++port;
    if (in_use.contains(port) && !listeners[port].expired())
      return Error(
          ErrorCategory::kIo,
          fmt::format("Error starting userland proxy: listen tcp4 0.0.0.0:{}: bind: address already in use",
                      port));
    auto handle = std::make_shared<ProxySpec>(spec);
    listeners[port] = handle;
    in_use.insert(port);
    return ProxyListener{.handle = handle, .port = port};
  }
  bool listening(uint16_t port) {
    std::lock_guard lock(mutex);
    return listeners.contains(port) && !listeners[port].expired();
  }
  std::mutex mutex;
  uint16_t next_free = 40000;
  std::set<uint16_t> in_use;
  std::map<uint16_t, std::weak_ptr<ProxySpec>> listeners;
};

class NetworkManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("kiln-networks-test-").value());
    vms_ = VmStore::open(dir_->path()).value();
    reopen();
  }

  void reopen(bool with_vms = false) {
    manager_.reset();
    auto opened = NetworkManager::open(
        vms_->database(), {.fabric = &fabric_, .dns = &dns_, .ports = &proxy_, .events = &events_},
        with_vms ? vms_.get() : nullptr);
    ASSERT_TRUE(opened) << opened.error().message();
    manager_ = std::move(opened).value();
  }

  NetworkRecord create(CreateNetwork request) {
    auto created = manager_->create(request);
    EXPECT_TRUE(created) << created.error().message();
    return created.value_or(NetworkRecord{});
  }

  Error create_error(CreateNetwork request) {
    auto created = manager_->create(request);
    EXPECT_FALSE(created);
    return created ? Error::internal("created") : created.error();
  }

  static VmRecord vm(std::string id, std::vector<VmNetworkRequest> networks, std::string owner = "c") {
    VmRecord record;
    record.id = id;
    record.name = "vm-" + id;
    record.owner = owner;
    record.networks = std::move(networks);
    return record;
  }

  // attach() as VmManager calls it, with the nics and ports recorded as it records them.
  VmRecord started(VmRecord record, size_t slots = 0) {
    auto attached = manager_->attach(record, slots);
    EXPECT_TRUE(attached) << attached.error().message();
    if (!attached) return record;
    record.nics = attached->nics;
    for (const NicTap& tap : attached->taps) record.nic_taps.push_back(tap.name);
    record.published = attached->published;
    record.state = VmState::kRunning;
    return record;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<VmStore> vms_;
  FakeFabric fabric_;
  FakeDns dns_;
  FakeProxy proxy_;
  EventBus events_;
  std::unique_ptr<NetworkManager> manager_;
};

TEST(Ipv4Test, ParsesAsGoDoes) {
  EXPECT_EQ(parse_ipv4("172.17.0.1"), 0xAC110001u);
  EXPECT_FALSE(parse_ipv4("172.17.0"));
  EXPECT_FALSE(parse_ipv4("172.17.0.256"));
  EXPECT_FALSE(parse_ipv4("172.017.0.1"));
  EXPECT_FALSE(parse_ipv4("1.2.3.4 "));
  bool host_bits = false;
  auto subnet = parse_subnet("10.1.0.5/24", &host_bits);
  ASSERT_TRUE(subnet);
  EXPECT_TRUE(host_bits);
  EXPECT_EQ(subnet->to_string(), "10.1.0.0/24");
  EXPECT_FALSE(parse_subnet("10.1.0.0/33"));
  EXPECT_FALSE(parse_subnet("bad"));
  EXPECT_FALSE(parse_subnet("10.1.0.0/"));
  EXPECT_TRUE(parse_subnet("10.0.0.0/8")->overlaps(*parse_subnet("10.200.0.0/16")));
  EXPECT_FALSE(parse_subnet("10.1.0.0/24")->overlaps(*parse_subnet("10.1.1.0/24")));
  EXPECT_EQ(mac_for(*parse_ipv4("172.17.0.2")), "02:42:ac:11:00:02");
  ASSERT_EQ(default_pools().size(), 15u + 16u);
  EXPECT_EQ(default_pools().front().to_string(), "172.17.0.0/16");
  EXPECT_EQ(default_pools()[14].to_string(), "172.31.0.0/16");
  EXPECT_EQ(default_pools()[15].to_string(), "192.168.0.0/20");
  EXPECT_EQ(default_pools()[16].to_string(), "192.168.16.0/20");
}

TEST_F(NetworkManagerTest, PredefinedNetworksExistOnceAndStay) {
  auto listed = manager_->list().value();
  ASSERT_EQ(listed.size(), 3u);
  NetworkRecord bridge = manager_->get("bridge").value();
  EXPECT_EQ(bridge.driver, "bridge");
  EXPECT_EQ(bridge.bridge, "kiln0");
  ASSERT_EQ(bridge.ipam.size(), 1u);
  EXPECT_EQ(bridge.ipam[0].subnet, "172.17.0.0/16");
  EXPECT_EQ(bridge.ipam[0].gateway, "172.17.0.1");
  EXPECT_EQ(manager_->get("none").value().driver, "null");
  EXPECT_EQ(manager_->get("host").value().driver, "host");
  EXPECT_EQ(fabric_.made.at("kiln0"), "172.17.0.1/16");
  for (const char* name : {"bridge", "none", "host"}) {
    auto removed = manager_->remove(name);
    ASSERT_FALSE(removed);
    EXPECT_EQ(removed.error().category(), ErrorCategory::kPermissionDenied);
    EXPECT_EQ(removed.error().message(),
              std::string(name) + " is a pre-defined network and cannot be removed");
    EXPECT_EQ(create_error({.name = name}).message(),
              fmt::format("operation is not permitted on predefined {} network ", name));
  }
  std::string id = bridge.id;
  reopen();
  EXPECT_EQ(manager_->list().value().size(), 3u);
  EXPECT_EQ(manager_->get("bridge").value().id, id);  // ids are stable across restarts
}

TEST_F(NetworkManagerTest, DefaultPoolsAreHandedOutInTurnSkippingTakenOnes) {
  EXPECT_EQ(create({.name = "a"}).ipam[0].subnet, "172.18.0.0/16");
  auto b = create({.name = "b"});
  EXPECT_EQ(b.ipam[0].subnet, "172.19.0.0/16");
  EXPECT_EQ(b.ipam[0].gateway, "172.19.0.1");
  EXPECT_TRUE(b.ipam[0].gateway_shown);
  EXPECT_EQ(b.bridge, "br-" + b.id.substr(0, 12));
  EXPECT_EQ(fabric_.made.at(b.bridge), "172.19.0.1/16");
  ASSERT_TRUE(manager_->remove("a"));
  // As dockerd 20.10: the next pool after the last one given, not the first free one.
  EXPECT_EQ(create({.name = "c"}).ipam[0].subnet, "172.20.0.0/16");
  EXPECT_EQ(create({.name = "d", .ipam = {{.subnet = "172.21.0.0/16"}}}).ipam[0].subnet, "172.21.0.0/16");
  EXPECT_EQ(create({.name = "e"}).ipam[0].subnet, "172.22.0.0/16");
  for (int i = 23; i <= 31; ++i) create({.name = "n" + std::to_string(i)});
  EXPECT_EQ(create({.name = "f"}).ipam[0].subnet, "192.168.0.0/20");
  EXPECT_EQ(create({.name = "g"}).ipam[0].subnet, "192.168.16.0/20");
}

TEST_F(NetworkManagerTest, UserSubnetsGatewaysAndRanges) {
  auto full =
      create({.name = "full",
              .internal = true,
              .attachable = true,
              .ipam = {{.subnet = "10.7.0.0/24", .gateway = "10.7.0.254", .ip_range = "10.7.0.128/25"}},
              .options = {{"foo", "bar"}},
              .labels = {{"a", "b"}}});
  EXPECT_EQ(full.ipam[0].gateway, "10.7.0.254");
  EXPECT_TRUE(full.ipam[0].gateway_shown);
  EXPECT_TRUE(full.ipam[0].subnet_given);
  EXPECT_EQ(fabric_.made.at(full.bridge), "10.7.0.254/24");
  EXPECT_NE(std::find(fabric_.calls.begin(), fabric_.calls.end(),
                      "ensure " + full.bridge + " 10.7.0.254/24 internal"),
            fabric_.calls.end());
  auto plain = create({.name = "plain", .ipam = {{.subnet = "10.8.0.0/24"}}});
  EXPECT_EQ(plain.ipam[0].gateway, "10.8.0.1");
  EXPECT_FALSE(plain.ipam[0].gateway_shown);  // dockerd shows only the subnet it was given

  reopen();
  NetworkRecord again = manager_->get("full").value();
  EXPECT_EQ(again.ipam, full.ipam);
  EXPECT_EQ(again.labels, full.labels);
  EXPECT_EQ(again.options, full.options);
  EXPECT_TRUE(again.internal);
  EXPECT_TRUE(again.attachable);
  EXPECT_EQ(manager_->get(full.id.substr(0, 5)).value().name, "full");
}

TEST_F(NetworkManagerTest, BadInputInDockerdsWordsAndNothingHalfCreated) {
  create({.name = "taken", .ipam = {{.subnet = "10.1.0.0/24"}}});
  size_t bridges = fabric_.made.size();
  auto expect = [&](CreateNetwork request, ErrorCategory category, const std::string& message) {
    Error error = create_error(request);
    EXPECT_EQ(error.category(), category) << message;
    EXPECT_EQ(error.message(), message);
  };
  expect({.name = "taken"}, ErrorCategory::kAlreadyExists, "network with name taken already exists");
  expect({.name = "x", .ipam = {{.subnet = "10.1.0.0/16"}}}, ErrorCategory::kPermissionDenied,
         "Pool overlaps with other one on this address space");
  expect({.name = "x", .ipam = {{.subnet = "172.17.5.0/24"}}}, ErrorCategory::kPermissionDenied,
         "Pool overlaps with other one on this address space");
  expect({.name = "x", .ipam = {{.subnet = "10.0.0.0/8"}}}, ErrorCategory::kPermissionDenied,
         "Pool overlaps with other one on this address space");  // over the outbound NAT's 10.0.2.0/24 too
  expect({.name = "x", .ipam = {{.subnet = "10.9.0.5/24"}}}, ErrorCategory::kPermissionDenied,
         "Pool overlaps with other one on this address space");
  expect({.name = "x", .ipam = {{.subnet = "bad"}}}, ErrorCategory::kInternal,
         "Invalid subnet bad : invalid CIDR address: bad");
  expect({.name = "x", .ipam = {{.subnet = "10.9.0.0/24", .gateway = "10.2.0.1"}}}, ErrorCategory::kInternal,
         "failed to allocate gateway (10.2.0.1): Requested address is out of range");
  expect({.name = "x", .ipam = {{.subnet = "10.9.0.0/24", .gateway = "10.9.0.0"}}}, ErrorCategory::kInternal,
         "failed to allocate gateway (10.9.0.0): Address already in use");
  expect({.name = "x", .ipam = {{.subnet = "10.9.0.0/24", .ip_range = "10.6.0.0/25"}}},
         ErrorCategory::kInvalidArgument, "no matching subnet for range 10.6.0.0/25");
  expect({.name = "x", .ipam = {{.subnet = "10.11.0.0/24"}, {.subnet = "10.12.0.0/24"}}},
         ErrorCategory::kPermissionDenied, "bridge driver doesn't support multiple subnets");
  expect({.name = "x", .driver = "foo"}, ErrorCategory::kNotFound, "plugin \"foo\" not found");
  expect({.name = "x", .driver = "host"}, ErrorCategory::kPermissionDenied,
         "only one instance of \"host\" network is allowed");
  expect({.name = "x", .ipam_driver = "foo"}, ErrorCategory::kNotFound, "plugin \"foo\" not found");
  expect({.name = "x", .ingress = true}, ErrorCategory::kPermissionDenied,
         "Ingress network can only be global scope network");
  expect({.name = ""}, ErrorCategory::kInternal, "invalid name: ");
  EXPECT_NE(create_error({.name = "x", .enable_ipv6 = true}).message().find("IPv6 is not supported"),
            std::string::npos);
  EXPECT_NE(
      create_error({.name = "x", .ipam = {{.subnet = "fd00::/64"}}}).message().find("IPv6 is not supported"),
      std::string::npos);
  EXPECT_EQ(fabric_.made.size(), bridges);
  EXPECT_EQ(manager_->list().value().size(), 4u);

  // A bridge or DNS zone that cannot be made undoes the create, and its pool is handed out again.
  dns_.fail = true;
  (void)create_error({.name = "nodns"});
  dns_.fail = false;
  EXPECT_FALSE(manager_->get("nodns"));
  EXPECT_EQ(fabric_.made.size(), bridges);
  EXPECT_EQ(dns_.running(), bridges);
  EXPECT_EQ(create({.name = "next"}).ipam[0].subnet, "172.18.0.0/16");
  reopen();
  EXPECT_FALSE(manager_->get("nodns"));
}

TEST_F(NetworkManagerTest, RemoveDeletesTheBridgeAndZoneButNotWhileAVmRuns) {
  auto net = create({.name = "net"});
  EXPECT_EQ(dns_.running(), 2u);  // the default network's (forwarding only) and this one's
  VmRecord running = started(vm("v1", {{.network = "net"}}));
  auto refused = manager_->remove("net");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kPermissionDenied);
  EXPECT_EQ(refused.error().message(),
            fmt::format("error while removing network: network net id {} has active endpoints", net.id));
  EXPECT_EQ(manager_->prune([](const NetworkRecord&) { return true; }).value(), std::vector<std::string>());
  manager_->detach(running);
  ASSERT_TRUE(manager_->remove(net.id.substr(0, 12)));
  EXPECT_FALSE(fabric_.made.contains(net.bridge));
  EXPECT_EQ(dns_.running(), 1u);
  auto missing = manager_->remove("net");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(missing.error().message(), "network net not found");
}

TEST_F(NetworkManagerTest, OpenMakesBridgesAfterARebootAndDeletesStrayOnes) {
  auto net = create({.name = "net", .internal = true});
  fabric_.made.clear();                              // a reboot
  fabric_.made["br-0123456789ab"] = "10.99.0.1/24";  // a crash between a remove's bridge and row
  fabric_.made["virbr0"] = "192.168.122.1/24";       // not Kiln's
  reopen();
  EXPECT_EQ(fabric_.made.at("kiln0"), "172.17.0.1/16");
  EXPECT_EQ(fabric_.made.at(net.bridge), "172.18.0.1/16");
  EXPECT_FALSE(fabric_.made.contains("br-0123456789ab"));
  EXPECT_TRUE(fabric_.made.contains("virbr0"));
}

TEST_F(NetworkManagerTest, AttachGivesAddressesTapsNamesAndDns) {
  create({.name = "net", .ipam = {{.subnet = "10.9.0.0/24"}}});
  VmRecord first = started(vm("v1", {{.network = "bridge"}, {.network = "net", .aliases = {"web", "c1"}}}));
  ASSERT_EQ(first.nics.size(), 2u);
  EXPECT_EQ(first.nics[0].ipv4, "172.17.0.2");
  EXPECT_EQ(first.nics[0].prefix_length, 16);
  EXPECT_EQ(first.nics[0].mac, "02:42:ac:11:00:02");
  EXPECT_EQ(first.nics[0].gateway, "172.17.0.1");
  EXPECT_EQ(first.nics[0].dns, std::vector<std::string>{"172.17.0.1"});
  EXPECT_EQ(first.nics[0].bridge, "kiln0");
  EXPECT_EQ(first.nics[0].endpoint_id.size(), 64u);
  EXPECT_EQ(first.nics[1].ipv4, "10.9.0.2");
  EXPECT_EQ(first.nics[1].aliases, (std::vector<std::string>{"web", "c1"}));
  EXPECT_EQ(fabric_.taps, 2);

  VmRecord fixed = started(vm("v2", {{.network = "net", .ipv4 = "10.9.0.50", .mac = "02:00:00:00:00:01"}}));
  EXPECT_EQ(fixed.nics[0].ipv4, "10.9.0.50");
  EXPECT_EQ(fixed.nics[0].mac, "02:00:00:00:00:01");
  VmRecord next = started(vm("v3", {{.network = "net"}}));
  EXPECT_EQ(next.nics[0].ipv4, "10.9.0.3");
  // A plain VM (no owner) answers to its own name too.
  VmRecord plain = started(vm("v4", {{.network = "net"}}, ""));
  EXPECT_EQ(plain.nics[0].aliases, std::vector<std::string>{"vm-v4"});

  std::string net_id = manager_->get("net").value().id;
  EXPECT_EQ(manager_->lookup_name(net_id, "WEB"), std::vector<std::string>{"10.9.0.2"});
  EXPECT_EQ(manager_->lookup_address(net_id, "10.9.0.2"), (std::vector<std::string>{"web", "c1"}));
  EXPECT_TRUE(manager_->lookup_name(net_id, "nobody").empty());
  EXPECT_EQ(manager_->lookup_name(net_id, "web.net."), std::vector<std::string>{"10.9.0.2"});
  EXPECT_EQ(manager_->lookup_name(net_id, "c1.NET"), std::vector<std::string>{"10.9.0.2"});
  EXPECT_TRUE(manager_->lookup_name(net_id, "web.other").empty());
  // The zones answer through the same table; the default network's answers no names.
  ASSERT_EQ(dns_.lookups.size(), 2u);
  EXPECT_TRUE(dns_.lookups[0].forward("vm-v1", "").empty());
  EXPECT_FALSE(dns_.lookups[0].reverse("172.17.0.2"));
  EXPECT_EQ(dns_.lookups[0].network_name, "");
  EXPECT_EQ(dns_.lookups[1].reverse("10.9.0.2"), "web.net");
  EXPECT_EQ(dns_.lookups[1].network_name, "net");
  EXPECT_EQ(dns_.lookups[1].forward("web", ""), std::vector<std::string>{"10.9.0.2"});
  EXPECT_EQ(manager_->endpoints(net_id).size(), 4u);

  auto taken = manager_->attach(vm("v5", {{.network = "net", .ipv4 = "10.9.0.50"}}), 0);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().message(), "Address already in use");
  auto outside = manager_->attach(vm("v5", {{.network = "net", .ipv4 = "10.10.0.5"}}), 0);
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().category(), ErrorCategory::kInvalidArgument);
  auto on_default = manager_->attach(vm("v5", {{.network = "bridge", .ipv4 = "172.17.0.9"}}), 0);
  ASSERT_FALSE(on_default);
  EXPECT_EQ(on_default.error().message(),
            "user specified IP address is supported on user defined networks only");
  auto host = manager_->attach(vm("v5", {{.network = "host"}}), 0);
  ASSERT_FALSE(host);
  EXPECT_EQ(host.error().message(), host_network_unsupported_message());
  auto unknown = manager_->attach(vm("v5", {{.network = "nosuch"}}), 0);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message(), "network nosuch not found");

  manager_->detach(first);
  EXPECT_TRUE(manager_->lookup_name(net_id, "web").empty());
  // Addresses are handed out in turn: the one just freed comes back last.
  EXPECT_EQ(started(vm("v6", {{.network = "net"}})).nics[0].ipv4, "10.9.0.5");
}

TEST_F(NetworkManagerTest, AFailedAttachHoldsNothing) {
  create({.name = "net", .ipam = {{.subnet = "10.9.0.0/29"}}});
  fabric_.fail_taps = true;
  auto failed = manager_->attach(vm("v1", {{.network = "net"}, {.network = "bridge"}}), 0);
  ASSERT_FALSE(failed);
  fabric_.fail_taps = false;
  std::string net_id = manager_->get("net").value().id;
  EXPECT_TRUE(manager_->endpoints(net_id).empty());
  EXPECT_EQ(started(vm("v2", {{.network = "net"}})).nics[0].ipv4, "10.9.0.3");

  // A /29 has 5 addresses for VMs after the gateway.
  for (int i = 0; i < 4; ++i) started(vm("f" + std::to_string(i), {{.network = "net"}}));
  auto full = manager_->attach(vm("v9", {{.network = "bridge"}, {.network = "net"}}), 0);
  ASSERT_FALSE(full);
  EXPECT_NE(full.error().message().find("no available IPv4 addresses"), std::string::npos);
  EXPECT_TRUE(manager_->endpoints(manager_->get("bridge").value().id).empty());

  // A port in use fails the start with dockerd's words and frees the addresses taken before it.
  VmRecord web = vm("w1", {{.network = "bridge"}});
  web.ports = {{.protocol = "tcp", .host_port = 8080, .guest_port = 80}};
  VmRecord running = started(web);
  ASSERT_EQ(running.published.size(), 1u);
  EXPECT_TRUE(proxy_.listening(8080));
  web.id = "w2";
  web.name = "vm-w2";
  auto busy = manager_->attach(web, 0);
  ASSERT_FALSE(busy);
  EXPECT_NE(busy.error().message().find("driver failed programming external connectivity on endpoint vm-w2"),
            std::string::npos);
  EXPECT_NE(
      busy.error().message().find("Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address "
                                  "already in use"),
      std::string::npos);
  EXPECT_EQ(manager_->endpoints(manager_->get("bridge").value().id).size(), 1u);
  manager_->detach(running);
  EXPECT_FALSE(proxy_.listening(8080));
}

TEST_F(NetworkManagerTest, PublishedPortsGetTheirPortAndTarget) {
  VmRecord web = vm("w1", {{.network = "bridge"}});
  web.ports = {{.protocol = "tcp", .host_ip = "127.0.0.1", .host_port = 0, .guest_port = 80},
               {.protocol = "udp", .host_port = 5353, .guest_port = 53}};
  VmRecord running = started(web);
  ASSERT_EQ(running.published.size(), 2u);
  EXPECT_EQ(running.published[0].host_port, 40000);
  EXPECT_EQ(running.published[0].host_ip, "127.0.0.1");
  EXPECT_EQ(running.published[1].host_port, 5353);
  auto spec = proxy_.listeners[40000].lock();
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->target_ip, "172.17.0.2");
  EXPECT_EQ(spec->target_port, 80);
  spec.reset();
  manager_->detach(running);
  EXPECT_FALSE(proxy_.listening(40000));
  EXPECT_FALSE(proxy_.listening(5353));

  VmRecord none = vm("w2", {});
  none.ports = {{.guest_port = 80}};
  EXPECT_FALSE(manager_->attach(none, 0));

  // A host port range (docker run -p 8080-8082:80): its first free port, recorded as chosen.
  VmRecord first = vm("w3", {{.network = "bridge"}});
  first.ports = {{.host_port = 8080, .guest_port = 80, .host_port_last = 8082}};
  VmRecord second = first;
  second.id = "w4";
  EXPECT_EQ(started(first).published[0].host_port, 8080);
  VmRecord next = started(second);
  ASSERT_EQ(next.published.size(), 1u);
  EXPECT_EQ(next.published[0].host_port, 8081);
  EXPECT_EQ(next.published[0].host_port_last, 0);
}

TEST_F(NetworkManagerTest, RunningVmsKeepTheirAddressesAcrossARestart) {
  create({.name = "net", .ipam = {{.subnet = "10.9.0.0/24"}}});
  VmRecord web = vm("v1", {{.network = "net", .aliases = {"web"}}});
  web.ports = {{.host_port = 8080, .guest_port = 80}};
  VmRecord running = started(web);
  running.name = "web-vm";
  ASSERT_TRUE(vms_->insert(running));
  reopen(/*with_vms=*/true);
  std::string net_id = manager_->get("net").value().id;
  // Reserved at open, before VmManager adopts it: a new VM cannot take its address.
  EXPECT_EQ(manager_->lookup_name(net_id, "web"), std::vector<std::string>{"10.9.0.2"});
  EXPECT_EQ(started(vm("v2", {{.network = "net"}})).nics[0].ipv4, "10.9.0.3");
  EXPECT_FALSE(proxy_.listening(8080) && false);
  ASSERT_TRUE(manager_->adopt(running));
  EXPECT_TRUE(proxy_.listening(8080));
  EXPECT_EQ(manager_->endpoints(net_id).size(), 2u);
  // Someone else's address cannot be adopted.
  VmRecord other = running;
  other.id = "v3";
  other.published.clear();
  EXPECT_FALSE(manager_->adopt(other));
  EXPECT_EQ(manager_->endpoints(net_id).size(), 2u);
  manager_->detach(running);
  EXPECT_FALSE(proxy_.listening(8080));
}

TEST_F(NetworkManagerTest, SpareSlotsLetARunningVmJoinAndLeaveNetworks) {
  create({.name = "net", .ipam = {{.subnet = "10.9.0.0/24"}}});
  std::string net_id = manager_->get("net").value().id;
  VmRecord running = started(vm("v1", {{.network = "bridge"}}), 3);
  ASSERT_EQ(running.nic_taps.size(), 3u);
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[0]], "kiln0");
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[1]], "");  // spares: on no bridge
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[2]], "");

  auto joined = manager_->connect(running, {.network = "net", .aliases = {"db"}}, 2, running.nic_taps[2]);
  ASSERT_TRUE(joined) << joined.error().message();
  EXPECT_EQ(joined->slot, 2u);
  EXPECT_EQ(joined->ipv4, "10.9.0.2");
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[2]], manager_->get("net").value().bridge);
  EXPECT_EQ(manager_->lookup_name(net_id, "db"), std::vector<std::string>{"10.9.0.2"});
  EXPECT_EQ(manager_->endpoints(net_id).size(), 1u);
  running.nics.push_back(*joined);
  // Twice on one network: dockerd's words, nothing changes.
  auto again = manager_->connect(running, {.network = "net"}, 1, running.nic_taps[1]);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().category(), ErrorCategory::kPermissionDenied);
  EXPECT_EQ(again.error().message(), "endpoint with name vm-v1 already exists in network net");
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[1]], "");
  // A tap that cannot join holds no address.
  auto broken = manager_->connect(vm("v2", {}), {.network = "net"}, 0, "ktap-gone");
  ASSERT_FALSE(broken);
  EXPECT_EQ(manager_->endpoints(net_id).size(), 1u);
  // Its address is free again (new ones are handed out in turn, so ask for it).
  EXPECT_EQ(started(vm("v3", {{.network = "net", .ipv4 = "10.9.0.3"}})).nics[0].ipv4, "10.9.0.3");

  ASSERT_TRUE(manager_->disconnect(running, *joined));
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[2]], "");
  EXPECT_TRUE(manager_->lookup_name(net_id, "db").empty());
  EXPECT_EQ(manager_->endpoints(net_id).size(), 1u);  // v3's
  // Left the bridge network alone.
  EXPECT_EQ(manager_->endpoints(manager_->get("bridge").value().id).size(), 1u);

  running.nics.pop_back();  // as VmManager records it
  // A kilnd killed between putting a spare's tap on a bridge and recording the NIC: adopt takes it off.
  fabric_.on_bridge[running.nic_taps[1]] = manager_->get("net").value().bridge;
  ASSERT_TRUE(manager_->adopt(running));
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[1]], "");
  EXPECT_EQ(fabric_.on_bridge[running.nic_taps[0]], "kiln0");  // its NIC's tap stays
}

TEST_F(NetworkManagerTest, AVmResolvesNamesOnAllOfItsNetworksAsDockersResolver) {
  create({.name = "front", .ipam = {{.subnet = "10.9.1.0/24"}}});
  create({.name = "back", .ipam = {{.subnet = "10.9.2.0/24"}}});
  std::string front = manager_->get("front").value().id;
  VmRecord db = started(vm("v1", {{.network = "back", .aliases = {"db"}}}));
  VmRecord app = started(vm("v2", {{.network = "front", .aliases = {"app"}}, {.network = "back"}}));
  VmRecord web = started(vm("v3", {{.network = "front", .aliases = {"web"}}}));
  // app asks front's server for db, which is only on back: app is on back too.
  EXPECT_EQ(manager_->lookup_name(front, "db", app.nics[0].ipv4), std::vector<std::string>{"10.9.2.2"});
  // web is not on back: it gets no answer, nor does an unknown asker.
  EXPECT_TRUE(manager_->lookup_name(front, "db", web.nics[0].ipv4).empty());
  EXPECT_TRUE(manager_->lookup_name(front, "db", "10.9.1.99").empty());
  EXPECT_TRUE(manager_->lookup_name(front, "db").empty());
  // A name on the network asked comes first.
  EXPECT_EQ(manager_->lookup_name(front, "web", app.nics[0].ipv4), std::vector<std::string>{"10.9.1.3"});
  (void)db;
}

TEST_F(NetworkManagerTest, ConcurrentStartsNeverShareAnAddress) {
  create({.name = "net", .ipam = {{.subnet = "10.9.0.0/24"}}});
  constexpr int kThreads = 4;
  constexpr int kEach = 25;
  std::vector<std::vector<std::string>> addresses(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        VmRecord record = vm(fmt::format("t{}-{}", t, i), {{.network = "net"}});
        auto attached = manager_->attach(record, 0);
        if (!attached) continue;
        addresses[t].push_back(attached->nics[0].ipv4);
        if (i % 3 == 0) {
          record.nics = {attached->nics[0]};
          manager_->detach(record);
          addresses[t].pop_back();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> unique;
  size_t total = 0;
  for (const auto& list : addresses) {
    total += list.size();
    unique.insert(list.begin(), list.end());
  }
  EXPECT_EQ(unique.size(), total);
  EXPECT_EQ(manager_->endpoints(manager_->get("net").value().id).size(), total);
}

TEST_F(NetworkManagerTest, EventsAsDockerd) {
  auto net = create({.name = "net"});
  VmRecord running = started(vm("v1", {{.network = "net"}}, "container-id"));
  manager_->detach(running);
  ASSERT_TRUE(manager_->remove("net"));
  auto events = events_.wait_after(0, std::chrono::milliseconds(0));
  std::vector<std::string> seen;
  for (const Event& event : events) {
    if (event.type != "network") continue;
    seen.push_back(event.action);
    EXPECT_EQ(event.id, net.id);
    EXPECT_EQ(event.attributes.value("name", ""), "net");
    EXPECT_EQ(event.attributes.value("type", ""), "bridge");
    if (event.action == "connect" || event.action == "disconnect") {
      EXPECT_EQ(event.attributes.value("container", ""), "container-id");
    }
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"create", "connect", "disconnect", "destroy"}));
}

}  // namespace
}  // namespace kiln::daemon::networks

// A container's networks in the Docker API: create's settings checked in dockerd's words, the VM networks a
// start asks for (names as Docker's DNS resolves them), connect/disconnect on a stopped container, and
// NetworkSettings as dockerd shows it for a container that never ran, one that runs and one that stopped.
#include "api/docker/container_networks.h"

#include <gtest/gtest.h>

#include "common/temp_dir.h"
#include "daemon/state/vm_store.h"

namespace kiln::api::docker {
namespace {

using daemon::containers::ContainerState;

class ContainerNetworksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("kiln-container-networks-test-").value());
    store_ = daemon::VmStore::open(dir_->path()).value();
    networks_ = daemon::networks::NetworkManager::open(store_->database(), {}).value();
    net_ = networks_->create({.name = "net", .ipam = {{.subnet = "10.9.0.0/24"}}}).value();
    container_.id = std::string(64, 'a');
    container_.name = "web";
  }

  Result<ContainerNetworking> parse(const Json& host_config, const Json& networking = Json(nullptr)) {
    return parse_container_networking(host_config, networking, *networks_);
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<daemon::VmStore> store_;
  std::unique_ptr<daemon::networks::NetworkManager> networks_;
  daemon::networks::NetworkRecord net_;
  ContainerRecord container_;
};

TEST_F(ContainerNetworksTest, LinksAreReadFromHostConfigAndEndpointsAsDockerdParsesThem) {
  auto parsed =
      parse(Json::parse(R"({"NetworkMode":"net","Links":["db:database"]})"),
            Json::parse(R"({"EndpointsConfig":{"net":{"Links":["api:backend","/cache:/web/c"]}}})"));
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_EQ(parsed->links.size(), 1u);
  EXPECT_EQ(parsed->links[0].alias, "database");
  ASSERT_EQ(parsed->networks.size(), 1u);
  EXPECT_EQ(parsed->networks[0].links, (std::vector<std::string>{"api:backend", "/cache:/web/c"}));
  auto bad = parse(Json::parse(R"({"NetworkMode":"net"})"),
                   Json::parse(R"({"EndpointsConfig":{"net":{"Links":["a:b:c"]}}})"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "bad format for links: a:b:c");
  // docker network connect's EndpointConfig is read the same way.
  auto endpoint = parse_endpoint_settings("net", Json::parse(R"({"Aliases":["x"],"Links":["api:backend"]})"));
  ASSERT_TRUE(endpoint);
  EXPECT_EQ(endpoint->links, std::vector<std::string>{"api:backend"});
  EXPECT_EQ(endpoint->aliases, std::vector<std::string>{"x"});
}

TEST_F(ContainerNetworksTest, ModesAsDockerd) {
  auto plain = parse(Json::object()).value();
  EXPECT_EQ(plain.network_mode, "default");
  ASSERT_EQ(plain.networks.size(), 1u);
  EXPECT_EQ(plain.networks[0].network, "bridge");
  EXPECT_EQ(plain.networks[0].network_id, networks_->get("bridge").value().id);

  EXPECT_TRUE(parse({{"NetworkMode", "none"}}).value().networks.empty());

  // The CLI names NetworkMode's network in EndpointsConfig too; the endpoint's settings come with it.
  auto user = parse({{"NetworkMode", "net"}},
                    {{"EndpointsConfig",
                      {{"net", {{"Aliases", {"db"}}, {"IPAMConfig", {{"IPv4Address", "10.9.0.7"}}}}}}}})
                  .value();
  ASSERT_EQ(user.networks.size(), 1u);
  EXPECT_EQ(user.networks[0].network_id, net_.id);
  EXPECT_EQ(user.networks[0].aliases, std::vector<std::string>{"db"});
  EXPECT_EQ(user.networks[0].ipv4, "10.9.0.7");

  auto host = parse({{"NetworkMode", "host"}});
  ASSERT_FALSE(host);
  EXPECT_EQ(host.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(host.error().message(), daemon::networks::host_network_unsupported_message());
  auto joined = parse({{"NetworkMode", "container:other"}});
  ASSERT_FALSE(joined);
  EXPECT_NE(joined.error().message().find("network mode \"container:other\" is not supported"),
            std::string::npos);
  // An unknown network: recorded by name, for the start to fail on (dockerd 20.10).
  auto lost = parse({{"NetworkMode", "nosuch"}}).value();
  ASSERT_EQ(lost.networks.size(), 1u);
  EXPECT_EQ(lost.networks[0].network, "nosuch");
  EXPECT_TRUE(lost.networks[0].network_id.empty());
}

TEST_F(ContainerNetworksTest, BadEndpointSettingsInDockerdsWords) {
  auto message = [&](const Json& host, const Json& networking) {
    auto parsed = parse(host, networking);
    EXPECT_FALSE(parsed);
    return parsed ? std::string() : parsed.error().message();
  };
  EXPECT_EQ(
      message(Json::object(), {{"EndpointsConfig", {{"net", Json::object()}, {"bridge", Json::object()}}}}),
      "Container cannot be connected to network endpoints: bridge, net");
  EXPECT_EQ(message(Json::object(), {{"EndpointsConfig", {{"bridge", {{"Aliases", {"x"}}}}}}}),
            "network-scoped alias is supported only for containers in user defined networks");
  EXPECT_EQ(message(Json::object(),
                    {{"EndpointsConfig", {{"bridge", {{"IPAMConfig", {{"IPv4Address", "1.2.3.4"}}}}}}}}),
            "user specified IP address is supported on user defined networks only");
  networks_->create({.name = "pooled"}).value();
  EXPECT_EQ(
      message(Json::object(),
              {{"EndpointsConfig", {{"pooled", {{"IPAMConfig", {{"IPv4Address", "1.2.3.4"}}}}}}}}),
      "user specified IP address is supported only when connecting to networks with user configured subnets");
  EXPECT_EQ(message({{"ExtraHosts", {"foo:bar"}}}, nullptr), "invalid IP address in add-host: \"bar\"");
  EXPECT_EQ(message({{"Dns", "8.8.8.8"}}, nullptr),
            "json: cannot unmarshal string into Go struct field HostConfig.Dns of type []string");
}

TEST_F(ContainerNetworksTest, DnsAndExtraHosts) {
  auto parsed = parse({{"Dns", {"1.1.1.1"}},
                       {"DnsOptions", {"ndots:2"}},
                       {"DnsSearch", {"example.com"}},
                       {"ExtraHosts", {"db:10.0.0.5", "host.docker.internal:host-gateway"}}})
                    .value();
  daemon::containers::HostConfig host;
  std::vector<NetworkEndpointConfig> networks;
  apply_container_networking(parsed, host, networks);
  EXPECT_EQ(host.dns, std::vector<std::string>{"1.1.1.1"});
  EXPECT_EQ(host.dns_options, std::vector<std::string>{"ndots:2"});
  EXPECT_EQ(host.dns_search, std::vector<std::string>{"example.com"});
  EXPECT_EQ(extra_hosts_lines(host.extra_hosts, "10.0.2.2").value(),
            (std::vector<std::string>{"10.0.0.5\tdb", "10.0.2.2\thost.docker.internal"}));
  EXPECT_EQ(networks.size(), 1u);
}

TEST_F(ContainerNetworksTest, VmRequestsCarryTheNamesDockerResolves) {
  container_.networks = {
      {.network = "bridge", .network_id = "b"},
      {.network = "net", .network_id = net_.id, .aliases = {"db", "web"}, .ipv4 = "10.9.0.7"}};
  auto requests = vm_network_requests(container_);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].network, "b");
  EXPECT_TRUE(requests[0].aliases.empty());  // the default network resolves no names
  EXPECT_EQ(requests[1].network, net_.id);
  EXPECT_EQ(requests[1].ipv4, "10.9.0.7");
  EXPECT_EQ(requests[1].aliases, (std::vector<std::string>{"web", "aaaaaaaaaaaa", "db"}));
}

TEST_F(ContainerNetworksTest, ConnectAndDisconnectOnlyWhileNotRunning) {
  container_.networks = {{.network = "bridge", .network_id = networks_->get("bridge").value().id}};
  ASSERT_TRUE(connect_container(container_, net_, {.aliases = {"db"}}));
  ASSERT_TRUE(connect_container(container_, net_, {}));  // again: no change
  ASSERT_EQ(container_.networks.size(), 2u);
  EXPECT_EQ(container_.networks[1].network_id, net_.id);
  EXPECT_EQ(container_.networks[1].aliases, std::vector<std::string>{"db"});
  auto none = connect_container(container_, networks_->get("none").value(), {});
  ASSERT_FALSE(none);
  EXPECT_EQ(
      none.error().message(),
      "container cannot be connected to multiple networks with one of the networks in private (none) mode");
  EXPECT_FALSE(connect_container(container_, networks_->get("host").value(), {}));

  container_.state = ContainerState::kPaused;
  auto paused = disconnect_container(container_, net_);
  ASSERT_FALSE(paused);
  EXPECT_EQ(paused.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(paused.error().message(), networks_fixed_message(container_));
  EXPECT_NE(paused.error().message().find("unpause it first"), std::string::npos);
  EXPECT_FALSE(connect_container(container_, networks_->get("bridge").value(), {}));
  // A running container: connecting it again to a network it is on is dockerd's 403.
  container_.state = ContainerState::kRunning;
  auto twice = connect_container(container_, net_, {});
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().category(), ErrorCategory::kPermissionDenied);
  EXPECT_EQ(twice.error().message(),
            fmt::format("endpoint with name {} already exists in network {}", container_.name, net_.name));
  container_.state = ContainerState::kExited;
  ASSERT_TRUE(disconnect_container(container_, net_));
  EXPECT_EQ(container_.networks.size(), 1u);
  auto again = disconnect_container(container_, net_);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(),
            fmt::format("container {} is not connected to the network net", container_.id));
}

TEST_F(ContainerNetworksTest, NetworkSettingsNeverRunRunningAndStopped) {
  std::string bridge_id = networks_->get("bridge").value().id;
  container_.networks = {{.network = "bridge", .network_id = bridge_id},
                         {.network = "net", .network_id = net_.id, .aliases = {"db"}}};
  Json created = container_network_settings_json(container_, nullptr);
  EXPECT_EQ(created["SandboxID"], "");
  EXPECT_EQ(created["IPAddress"], "");
  EXPECT_EQ(created["Ports"], Json::object());
  EXPECT_EQ(created["Networks"]["bridge"]["Aliases"], nullptr);
  EXPECT_EQ(created["Networks"]["bridge"]["NetworkID"], "");
  EXPECT_EQ(created["Networks"]["net"]["Aliases"], Json({"db"}));
  EXPECT_EQ(created["Networks"]["net"]["IPAMConfig"], nullptr);

  daemon::VmRecord vm;
  vm.id = std::string(64, 'b');
  vm.state = daemon::VmState::kRunning;
  vm.nics = {{.network_id = bridge_id,
              .network_name = "bridge",
              .endpoint_id = std::string(64, 'e'),
              .mac = "02:42:ac:11:00:02",
              .ipv4 = "172.17.0.2",
              .prefix_length = 16,
              .gateway = "172.17.0.1"},
             {.network_id = net_.id,
              .network_name = "net",
              .endpoint_id = std::string(64, 'f'),
              .mac = "02:42:0a:09:00:02",
              .ipv4 = "10.9.0.2",
              .prefix_length = 24,
              .gateway = "10.9.0.1"}};
  container_.state = ContainerState::kRunning;
  container_.started_at = "2026-11-30T00:00:00.000000000Z";
  Json running = container_network_settings_json(container_, &vm, {{"80/tcp", nullptr}});
  EXPECT_EQ(running["SandboxID"], vm.id);
  EXPECT_EQ(running["IPAddress"], "172.17.0.2");  // the default network's, at the top
  EXPECT_EQ(running["IPPrefixLen"], 16);
  EXPECT_EQ(running["Gateway"], "172.17.0.1");
  EXPECT_EQ(running["MacAddress"], "02:42:ac:11:00:02");
  EXPECT_EQ(running["EndpointID"], std::string(64, 'e'));
  EXPECT_EQ(running["Ports"], Json({{"80/tcp", nullptr}}));
  const Json& net = running["Networks"]["net"];
  EXPECT_EQ(net["IPAddress"], "10.9.0.2");
  EXPECT_EQ(net["IPPrefixLen"], 24);
  EXPECT_EQ(net["NetworkID"], net_.id);
  EXPECT_EQ(net["Aliases"], Json({"db", "aaaaaaaaaaaa"}));
  EXPECT_EQ(container_networks_json(container_, &vm)["net"], net);

  // Stopped: addresses go, the network id and aliases stay (as dockerd shows them).
  vm.state = daemon::VmState::kStopped;
  container_.state = ContainerState::kExited;
  Json stopped = container_network_settings_json(container_, &vm);
  EXPECT_EQ(stopped["IPAddress"], "");
  EXPECT_EQ(stopped["SandboxID"], "");
  EXPECT_EQ(stopped["Networks"]["net"]["IPAddress"], "");
  EXPECT_EQ(stopped["Networks"]["net"]["EndpointID"], "");
  EXPECT_EQ(stopped["Networks"]["net"]["NetworkID"], net_.id);
  EXPECT_EQ(stopped["Networks"]["net"]["Aliases"], Json({"db", "aaaaaaaaaaaa"}));

  ContainerRecord isolated = container_;
  isolated.host_config.network_mode = "none";
  isolated.networks.clear();
  EXPECT_EQ(container_networks_json(isolated, nullptr).size(), 1u);
  EXPECT_TRUE(container_networks_json(isolated, nullptr).contains("none"));
}

}  // namespace
}  // namespace kiln::api::docker

// A starting container's network files and requests, as dockerd writes them (checked against dockerd 20.10:
// `cat /etc/hosts /etc/resolv.conf` in a busybox on a user-defined network with --add-host, --dns-search and
// --dns-option).
#include "daemon/networks/container_networking.h"

#include <gtest/gtest.h>

namespace kiln::daemon::networks {
namespace {

containers::ContainerRecord container_on(std::vector<containers::NetworkEndpointConfig> networks) {
  containers::ContainerRecord container;
  container.id = std::string(64, 'a');
  container.name = "web";
  container.config.hostname = "hy";
  container.networks = std::move(networks);
  return container;
}

VmNic nic(std::string network, std::string ipv4, std::string gateway) {
  return VmNic{.network_name = std::move(network), .ipv4 = std::move(ipv4), .dns = {gateway}};
}

TEST(ContainerNetworkingTest, HostsFileAsDockerd) {
  auto container = container_on({{.network = "hn"}});
  container.host_config.extra_hosts = {"foo:1.2.3.4", "host.docker.internal:host-gateway"};
  EXPECT_EQ(container_hosts_file(container, {nic("hn", "10.50.0.2", "10.50.0.1")}, "10.0.2.2"),
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "ff00::0\tip6-mcastprefix\n"
            "ff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n"
            "1.2.3.4\tfoo\n"
            "10.0.2.2\thost.docker.internal\n"
            "10.50.0.2\thy\n");
  container.config.domainname = "example.com";
  std::string with_domain =
      container_hosts_file(container, {nic("hn", "10.50.0.2", "10.50.0.1")}, "10.0.2.2");
  EXPECT_NE(with_domain.find("10.50.0.2\thy.example.com hy\n"), std::string::npos);
  // --network none: no address of its own.
  EXPECT_EQ(container_hosts_file(container_on({}), {}, "10.0.2.2").find("hy"), std::string::npos);
}

TEST(ContainerNetworkingTest, ResolvConfPointsAtTheNetworksDnsServer) {
  auto container = container_on({{.network = "hn"}});
  container.host_config.dns_search = {"ex.com"};
  container.host_config.dns_options = {"ndots:3"};
  EXPECT_EQ(container_resolv_conf(container, {nic("hn", "10.50.0.2", "10.50.0.1")}),
            "search ex.com\nnameserver 10.50.0.1\noptions ndots:3\n");
  auto plain = container_on({{.network = "hn"}});
  EXPECT_EQ(container_resolv_conf(plain, {nic("hn", "10.50.0.2", "10.50.0.1")}),
            "nameserver 10.50.0.1\noptions ndots:0\n");
  plain.host_config.dns = {"9.9.9.9"};
  EXPECT_EQ(container_resolv_conf(plain, {nic("hn", "10.50.0.2", "10.50.0.1")}),
            "nameserver 10.50.0.1\nnameserver 9.9.9.9\noptions ndots:0\n");
  // The default network: its server forwards only; --dns replaces it, as dockerd's host resolv.conf would be.
  auto bridged = container_on({{.network = "bridge"}});
  EXPECT_EQ(container_resolv_conf(bridged, {nic("bridge", "172.17.0.2", "172.17.0.1")}),
            "nameserver 172.17.0.1\n");
  bridged.host_config.dns = {"9.9.9.9"};
  EXPECT_EQ(container_resolv_conf(bridged, {nic("bridge", "172.17.0.2", "172.17.0.1")}),
            "nameserver 9.9.9.9\n");
}

TEST(ContainerNetworkingTest, VmRequestsCarryDockersNames) {
  auto container =
      container_on({{.network = "bridge", .network_id = "b"},
                    {.network = "net", .network_id = "n", .aliases = {"db", "web"}, .ipv4 = "10.9.0.7"},
                    {.network = "lost"}});
  auto requests = vm_network_requests(container);
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].network, "b");
  EXPECT_TRUE(requests[0].aliases.empty());
  EXPECT_EQ(requests[1].network, "n");
  EXPECT_EQ(requests[1].ipv4, "10.9.0.7");
  EXPECT_EQ(requests[1].aliases, (std::vector<std::string>{"web", "aaaaaaaaaaaa", "db"}));
  EXPECT_EQ(requests[2].network, "lost");
}

TEST(ContainerNetworkingTest, ExtraHostsInDockerdsWords) {
  EXPECT_EQ(extra_hosts_lines({"v6:::1"}, "10.0.2.2").value(), std::vector<std::string>{"::1\tv6"});
  auto bad = extra_hosts_lines({"foo:bar"}, "10.0.2.2");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "invalid IP address in add-host: \"bar\"");
  EXPECT_FALSE(extra_hosts_lines({"noaddress"}, "10.0.2.2"));
}

TEST(ContainerNetworkingTest, LegacyLinksAsMobysParseLinkAndToEnv) {
  EXPECT_EQ(parse_link("db:database").value(),
            (containers::ContainerLink{.container = "db", .alias = "database"}));
  EXPECT_EQ(parse_link("db").value(), (containers::ContainerLink{.container = "db", .alias = "db"}));
  // What inspect shows, given back by a client that copies a HostConfig.
  EXPECT_EQ(parse_link("/db:/web/database").value(),
            (containers::ContainerLink{.container = "db", .alias = "database"}));
  EXPECT_EQ(parse_link("a:b:c").error().message(), "bad format for links: a:b:c");
  EXPECT_EQ(parse_link("").error().message(), "empty string specified for links");

  LinkedContainer db{.name = "db",
                     .ipv4 = "172.17.0.3",
                     .env = {"PATH=/bin", "FOO=1", "HOME=/root", "EMPTY="},
                     .ports = {"5432/tcp", "53/udp", "53/tcp"}};
  EXPECT_EQ(link_environment("web", "my-db", db), (std::vector<std::string>{
                                                      "MY_DB_PORT=tcp://172.17.0.3:53",
                                                      "MY_DB_PORT_53_TCP=tcp://172.17.0.3:53",
                                                      "MY_DB_PORT_53_TCP_ADDR=172.17.0.3",
                                                      "MY_DB_PORT_53_TCP_PORT=53",
                                                      "MY_DB_PORT_53_TCP_PROTO=tcp",
                                                      "MY_DB_PORT_53_UDP=udp://172.17.0.3:53",
                                                      "MY_DB_PORT_53_UDP_ADDR=172.17.0.3",
                                                      "MY_DB_PORT_53_UDP_PORT=53",
                                                      "MY_DB_PORT_53_UDP_PROTO=udp",
                                                      "MY_DB_PORT_5432_TCP=tcp://172.17.0.3:5432",
                                                      "MY_DB_PORT_5432_TCP_ADDR=172.17.0.3",
                                                      "MY_DB_PORT_5432_TCP_PORT=5432",
                                                      "MY_DB_PORT_5432_TCP_PROTO=tcp",
                                                      "MY_DB_NAME=/web/my-db",
                                                      "MY_DB_ENV_FOO=1",
                                                      "MY_DB_ENV_EMPTY=",
                                                  }));
  EXPECT_EQ(link_hosts_line("my-db", db), "172.17.0.3\tmy-db db");
  EXPECT_EQ(link_hosts_line("db", db), "172.17.0.3\tdb");
  auto container = container_on({{.network = "bridge"}});
  std::string hosts = container_hosts_file(container, {nic("bridge", "172.17.0.2", "172.17.0.1")}, "10.0.2.2",
                                           {link_hosts_line("my-db", db)});
  EXPECT_NE(hosts.find("172.17.0.3\tmy-db db\n172.17.0.2\thy\n"), std::string::npos) << hosts;
}

}  // namespace
}  // namespace kiln::daemon::networks

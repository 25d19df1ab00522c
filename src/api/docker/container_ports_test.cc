#include "api/docker/container_ports.h"

#include <gtest/gtest.h>

namespace kiln::api::docker {
namespace {

using daemon::PortPublication;

Result<ContainerPorts> parse(const std::string& config, const std::string& host_config) {
  return parse_container_ports(Json::parse(config), Json::parse(host_config));
}

std::string error_of(const std::string& config, const std::string& host_config) {
  auto parsed = parse(config, host_config);
  if (parsed) return "(no error)";
  EXPECT_EQ(parsed.error().category(), ErrorCategory::kInvalidArgument);
  return parsed.error().message();
}

// What `docker run -p 127.0.0.1:18080:80 -p 53/udp -P --expose 9000 -p 8000-8001:7000-7001
// -p 18100-18110:5000` sends (dockerd 20.10's HostConfig.PortBindings and Config.ExposedPorts).
constexpr const char* kRunConfig =
    R"({"ExposedPorts":{"5000/tcp":{},"53/udp":{},"7000/tcp":{},"7001/tcp":{},"80/tcp":{},"9000/tcp":{}}})";
constexpr const char* kRunHostConfig =
    R"({"PortBindings":{"5000/tcp":[{"HostIp":"","HostPort":"18100-18110"}],"53/udp":[{"HostIp":"","HostPort":""}],
"7000/tcp":[{"HostIp":"","HostPort":"8000"}],"7001/tcp":[{"HostIp":"","HostPort":"8001"}],
"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18080"}]},"PublishAllPorts":true})";

TEST(ContainerPortsTest, ReadsWhatTheCliSends) {
  auto ports = parse(kRunConfig, kRunHostConfig);
  ASSERT_TRUE(ports) << ports.error().message();
  ASSERT_EQ(ports->exposed.size(), 6u);
  EXPECT_EQ(ports->exposed[0], (ContainerPort{5000, "tcp"}));
  EXPECT_EQ(ports->exposed[1], (ContainerPort{53, "udp"}));
  EXPECT_EQ(ports->bindings, (std::vector<PortBinding>{
                                 {{5000, "tcp"}, "", 18100, 18110},
                                 {{53, "udp"}, "", 0, 0},
                                 {{7000, "tcp"}, "", 8000, 8000},
                                 {{7001, "tcp"}, "", 8001, 8001},
                                 {{80, "tcp"}, "127.0.0.1", 18080, 18080},
                                 {{9000, "tcp"}, "", 0, 0},  // -P
                             }));
  EXPECT_EQ(port_publications(*ports), (std::vector<PortPublication>{
                                           {"tcp", "", 18100, 5000, 18110},
                                           {"udp", "", 0, 53},
                                           {"tcp", "", 8000, 7000},
                                           {"tcp", "", 8001, 7001},
                                           {"tcp", "127.0.0.1", 18080, 80},
                                           {"tcp", "", 0, 9000},
                                       }));
}

TEST(ContainerPortsTest, OnlyExposedPortsArePublishedAndPublishAllTakesTheRest) {
  // dockerd publishes a binding only under an exposed port's exact key ("80" is not "80/tcp").
  auto ports =
      parse(R"({"ExposedPorts":{"80/tcp":{},"81/tcp":{}}})",
            R"({"PortBindings":{"80":[{"HostPort":"18081"}],"82/tcp":[{"HostPort":"18082"}],"81/tcp":[]}})");
  ASSERT_TRUE(ports);
  EXPECT_TRUE(ports->bindings.empty());
  auto all = parse(R"({"ExposedPorts":{"80/tcp":{},"81/udp":{}}})", R"({"PublishAllPorts":true})");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->bindings, (std::vector<PortBinding>{{{80, "tcp"}, "", 0, 0}, {{81, "udp"}, "", 0, 0}}));
  // Nothing at all.
  auto none = parse("{}", "{}");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->exposed.empty());
}

TEST(ContainerPortsTest, HostPortsAndIpsAsDockerdReadsThem) {
  auto ports = parse(R"({"ExposedPorts":{"80/tcp":{}}})", R"({"PortBindings":{"80/tcp":[
      {"HostPort":"0"},{"HostPort":"18089/udp"},{"HostIp":"bogus","HostPort":"18088"},{"HostIp":"::1","HostPort":"1"},
      null,{"hostip":"10.0.0.1","hostport":"2"}]}})");
  ASSERT_TRUE(ports) << ports.error().message();
  EXPECT_EQ(ports->bindings, (std::vector<PortBinding>{
                                 {{80, "tcp"}, "", 0, 0},
                                 {{80, "tcp"}, "", 18089, 18089},
                                 {{80, "tcp"}, "", 18088, 18088},
                                 {{80, "tcp"}, "::1", 1, 1},
                                 {{80, "tcp"}, "", 0, 0},
                                 {{80, "tcp"}, "10.0.0.1", 2, 2},
                             }));
}

TEST(ContainerPortsTest, InvalidSpecsGiveDockerdsMessages) {
  // Each checked against dockerd 20.10 (POST /containers/create answers 400 with these).
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"abc/tcp":[{"HostPort":"80"}]}})"),
            R"(invalid port specification: "abc")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80-90/tcp":[{"HostPort":"80"}]}})"),
            R"(invalid port specification: "80-90")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"70000/tcp":[]}})"), R"(invalid port specification: "70000")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"+80/tcp":[]}})"), R"(invalid port specification: "+80")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":[{"HostPort":"abc"}]}})"),
            R"(invalid port specification: "abc")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":[{"HostPort":"90-80"}]}})"),
            R"(invalid port specification: "90-80")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":[{"HostPort":" 80"}]}})"),
            R"(invalid port specification: " 80")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":[{"HostPort":"-1"}]}})"),
            R"(invalid port specification: "-1")");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":[{"HostPort":"1-"}]}})"),
            R"(invalid port specification: "1-")");
  // Accepted by dockerd: an empty key, a proto suffix on a HostPort, a bogus HostIp, exposed keys unchecked.
  EXPECT_TRUE(parse("{}", R"({"PortBindings":{"":[{"HostPort":"8080"}]}})"));
  EXPECT_TRUE(parse(R"({"ExposedPorts":{"abc/tcp":{}}})", "{}"));
}

TEST(ContainerPortsTest, TypeErrorsInGosWords) {
  EXPECT_EQ(error_of("{}", R"({"PortBindings":"x"})"),
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PortBindings of type "
            "nat.PortMap");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":"x"}})"),
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PortBindings of type "
            "[]nat.PortBinding");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":["x"]}})"),
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PortBindings of type "
            "nat.PortBinding");
  EXPECT_EQ(error_of("{}", R"({"PortBindings":{"80/tcp":[{"HostPort":80}]}})"),
            "json: cannot unmarshal number into Go struct field PortBinding.HostConfig.PortBindings.HostPort "
            "of type "
            "string");
  EXPECT_EQ(error_of(R"({"ExposedPorts":["80/tcp"]})", "{}"),
            "json: cannot unmarshal array into Go struct field ContainerConfigWrapper.ExposedPorts of type "
            "nat.PortSet");
  EXPECT_EQ(error_of(R"({"ExposedPorts":{"80/tcp":"x"}})", "{}"),
            "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.ExposedPorts of type "
            "struct {}");
  EXPECT_EQ(error_of("{}", R"({"PublishAllPorts":"yes"})"),
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PublishAllPorts of "
            "type bool");
}

TEST(ContainerPortsTest, SctpAndUnknownProtocolsAreRefusedWhenPublished) {
  EXPECT_EQ(
      error_of(R"({"ExposedPorts":{"80/sctp":{}}})", R"({"PortBindings":{"80/sctp":[{"HostPort":"1"}]}})"),
      "cannot publish 80/sctp: Kiln does not support SCTP (only tcp and udp ports)");
  EXPECT_EQ(error_of(R"({"ExposedPorts":{"80/sctp":{}}})", R"({"PublishAllPorts":true})"),
            "cannot publish 80/sctp: Kiln does not support SCTP (only tcp and udp ports)");
  EXPECT_EQ(
      error_of(R"({"ExposedPorts":{"80/foo":{}}})", R"({"PortBindings":{"80/foo":[{"HostPort":"1"}]}})"),
      "invalid transport protocol: foo");
  // Exposed only: nothing is published, nothing refused (dockerd records it the same).
  EXPECT_TRUE(parse(R"({"ExposedPorts":{"80/sctp":{}}})", "{}"));
}

TEST(ContainerPortsTest, InspectAndPsShapesMatchDockerd) {
  // dockerd 20.10 for `docker run -p 127.0.0.1:18080:80 -p 53/udp --expose 9000 --expose 7000/udp`:
  //   NetworkSettings.Ports {"53/udp":[{"HostIp":"0.0.0.0","HostPort":"32769"}],"7000/udp":null,
  //   "80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18080"}],"9000/tcp":null}
  std::vector<ContainerPort> exposed{{53, "udp"}, {7000, "udp"}, {80, "tcp"}, {9000, "tcp"}};
  std::vector<PortPublication> published{{"tcp", "127.0.0.1", 18080, 80}, {"udp", "", 32769, 53}};
  EXPECT_EQ(network_settings_ports(exposed, published, true),
            Json::parse(R"({"53/udp":[{"HostIp":"0.0.0.0","HostPort":"32769"}],"7000/udp":null,
                "80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18080"}],"9000/tcp":null})"));
  EXPECT_EQ(ps_ports(exposed, published, true), Json::parse(R"([
      {"IP":"0.0.0.0","PrivatePort":53,"PublicPort":32769,"Type":"udp"},
      {"PrivatePort":7000,"Type":"udp"},
      {"IP":"127.0.0.1","PrivatePort":80,"PublicPort":18080,"Type":"tcp"},
      {"PrivatePort":9000,"Type":"tcp"}])"));
  // Created or exited: {} and [] (dockerd clears them when the container stops).
  EXPECT_EQ(network_settings_ports(exposed, published, false), Json::object());
  EXPECT_EQ(ps_ports(exposed, published, false), Json::array());
  // Two bindings of one port, and an IPv6 one.
  std::vector<PortPublication> two{{"tcp", "", 18082, 80}, {"tcp", "::1", 18083, 80}};
  EXPECT_EQ(
      network_settings_ports({{80, "tcp"}}, two, true),
      Json::parse(
          R"({"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"18082"},{"HostIp":"::1","HostPort":"18083"}]})"));
}

std::vector<PortMapping> spec(std::string_view text) {
  auto parsed = parse_port_spec(text);
  EXPECT_TRUE(parsed) << text << ": " << parsed.error().message();
  return parsed ? *parsed : std::vector<PortMapping>{};
}

std::string spec_error(std::string_view text) {
  auto parsed = parse_port_spec(text);
  return parsed ? "(no error)" : parsed.error().message();
}

TEST(ContainerPortsTest, PortSpecsAsTheCliParsesThem) {
  // Messages as the docker CLI on this host prints them (after its "docker: ").
  EXPECT_EQ(spec("80"), (std::vector<PortMapping>{{"80/tcp", "", ""}}));
  EXPECT_EQ(spec("53/udp"), (std::vector<PortMapping>{{"53/udp", "", ""}}));
  EXPECT_EQ(spec("8080:80"), (std::vector<PortMapping>{{"80/tcp", "", "8080"}}));
  EXPECT_EQ(spec("127.0.0.1:18080:80"), (std::vector<PortMapping>{{"80/tcp", "127.0.0.1", "18080"}}));
  EXPECT_EQ(spec("127.0.0.1::80/UDP"), (std::vector<PortMapping>{{"80/udp", "127.0.0.1", ""}}));
  EXPECT_EQ(spec("[::1]:80:80"), (std::vector<PortMapping>{{"80/tcp", "::1", "80"}}));
  EXPECT_EQ(spec("::1:80:80"), (std::vector<PortMapping>{{"80/tcp", "::1", "80"}}));
  EXPECT_EQ(spec("8000-8001:7000-7001"),
            (std::vector<PortMapping>{{"7000/tcp", "", "8000"}, {"7001/tcp", "", "8001"}}));
  EXPECT_EQ(spec("7000-7001"), (std::vector<PortMapping>{{"7000/tcp", "", ""}, {"7001/tcp", "", ""}}));
  EXPECT_EQ(spec("18100-18110:5000"), (std::vector<PortMapping>{{"5000/tcp", "", "18100-18110"}}));
  EXPECT_EQ(spec("80/sctp"), (std::vector<PortMapping>{{"80/sctp", "", ""}}));

  EXPECT_EQ(spec_error("8000-8002:7000-7001"),
            "invalid ranges specified for container and host Ports: 7000-7001 and 8000-8002");
  EXPECT_EQ(spec_error("8000:7000-7001"),
            "invalid ranges specified for container and host Ports: 7000-7001 and 8000");
  EXPECT_EQ(spec_error("x:80"), "invalid hostPort: x");
  EXPECT_EQ(spec_error("80-70"), "invalid containerPort: 80-70");
  EXPECT_EQ(spec_error("70000"), "invalid containerPort: 70000");
  EXPECT_EQ(spec_error("80/foo"), "invalid proto: foo");
  EXPECT_EQ(spec_error("1.2.3:80:80"), "invalid IP address: 1.2.3");
  EXPECT_EQ(spec_error("8080:"), "no port specified: 8080:<empty>");
  EXPECT_EQ(spec_error("[::1:80:80"), "invalid IP address [::1: address [::1:: missing ']' in address");
}

}  // namespace
}  // namespace kiln::api::docker

#include "cli/vm_networking.h"

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

Json publication(std::string_view spec) {
  auto port = publication_json(spec);
  EXPECT_TRUE(port) << spec << ": " << port.error().message();
  return port ? *port : Json();
}

std::string publication_error(std::string_view spec) {
  auto port = publication_json(spec);
  EXPECT_FALSE(port) << spec << " was taken as " << (port ? port->dump() : "");
  if (port) return "";
  EXPECT_EQ(port.error().category(), ErrorCategory::kInvalidArgument) << spec;
  return port.error().message();
}

TEST(NetworkFlags, NamesAndStaticAddresses) {
  EXPECT_EQ(networks_json({"bridge"}).value(), Json::array({"bridge"}));
  EXPECT_EQ(networks_json({"front", "back:10.5.0.7"}).value(),
            Json::parse(R"(["front", {"network": "back", "ipv4": "10.5.0.7"}])"));
}

TEST(NetworkFlags, NoneMeansNoNic) {
  EXPECT_EQ(networks_json({"none"}).value(), Json::array());
  auto mixed = networks_json({"bridge", "none"});
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error().message(), "--network none (no NIC) cannot be combined with other networks");
  EXPECT_FALSE(networks_json({"none:10.0.0.2"}));
}

TEST(NetworkFlags, BadValuesNameThemselves) {
  for (const char* spec : {"", ":10.0.0.2", "net:", "net:10.0.0", "net:10.0.0.256", "net:fd00::2", "net:x"}) {
    auto networks = networks_json({spec});
    ASSERT_FALSE(networks) << spec;
    EXPECT_EQ(networks.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_EQ(networks.error().message().rfind(fmt::format("--network {}: ", spec), 0), 0)
        << networks.error().message();
  }
}

TEST(PublishFlag, DockerSyntaxWithoutRanges) {
  EXPECT_EQ(publication("80"), Json::parse(R"({"protocol": "tcp", "host_port": 0, "guest_port": 80})"));
  EXPECT_EQ(publication("8080:80"),
            Json::parse(R"({"protocol": "tcp", "host_port": 8080, "guest_port": 80})"));
  EXPECT_EQ(publication("53/udp"), Json::parse(R"({"protocol": "udp", "host_port": 0, "guest_port": 53})"));
  EXPECT_EQ(publication("5353:53/UDP")["protocol"], "udp");
  EXPECT_EQ(publication("80/")["protocol"], "tcp");  // an empty protocol is tcp, as for docker
  EXPECT_EQ(
      publication("127.0.0.1:8080:80"),
      Json::parse(R"({"protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 8080, "guest_port": 80})"));
  // An IP with no host port: any free port on that address.
  EXPECT_EQ(publication("127.0.0.1::80/udp"),
            Json::parse(R"({"protocol": "udp", "host_ip": "127.0.0.1", "host_port": 0, "guest_port": 80})"));
  EXPECT_EQ(publication("0:80")["host_port"], 0);
  EXPECT_EQ(publication("65535:65535")["host_port"], 65535);
  EXPECT_EQ(publication("[::1]:8080:80")["host_ip"], "::1");
  EXPECT_EQ(publication("::1:8080:80")["host_ip"], "::1");
}

TEST(PublishFlag, BadSpecsSayWhatIsWrong) {
  constexpr std::string_view kUsage = " (expected [HOST_IP:][HOST_PORT:]GUEST_PORT[/tcp|udp])";
  EXPECT_EQ(publication_error("web:80"), fmt::format("-p web:80: invalid hostPort: web{}", kUsage));
  EXPECT_EQ(publication_error("8080:http"),
            fmt::format("-p 8080:http: invalid containerPort: http{}", kUsage));
  EXPECT_EQ(publication_error("80/sctp"),
            fmt::format("-p 80/sctp: invalid proto: sctp (Kiln publishes tcp or "
                        "udp){}",
                        kUsage));
  EXPECT_EQ(publication_error("8000-8010:80"),
            fmt::format("-p 8000-8010:80: port ranges are not supported: 8000-8010{}", kUsage));
  EXPECT_EQ(publication_error("80-81"),
            fmt::format("-p 80-81: port ranges are not supported: 80-81{}", kUsage));
  EXPECT_EQ(publication_error("1.2.3:80:80"),
            fmt::format("-p 1.2.3:80:80: invalid IP address: 1.2.3{}", kUsage));
  EXPECT_EQ(publication_error(""), fmt::format("-p : no port specified{}", kUsage));
  EXPECT_EQ(publication_error("8080:"), fmt::format("-p 8080:: no port specified{}", kUsage));
  for (const char* spec : {"0", "65536", "8080:0", "70000:80", "-1", "+80", "0x50", "[1.2.3.4]:80:80",
                           "[::1:80:80", "[::1]:80", "1.2.3.4:80"}) {
    EXPECT_NE(publication_error(spec), "") << spec;
  }
}

TEST(VmIp, TheReasonForNoAddress) {
  EXPECT_EQ(no_address_reason({{"name", "web"}, {"state", "running"}, {"networks", Json::array()}}),
            "VM web has no IP address: it is on no network");
  // A VM on no network is so whether it runs or not.
  EXPECT_EQ(no_address_reason({{"name", "web"}, {"state", "stopped"}, {"networks", Json::array()}}),
            "VM web has no IP address: it is on no network");
  Json on_bridge = Json::array({{{"network", "bridge"}}});
  EXPECT_EQ(no_address_reason({{"name", "web"}, {"state", "stopped"}, {"networks", on_bridge}}),
            "VM web is stopped: it has an IP address only while it runs");
  EXPECT_EQ(no_address_reason({{"name", "web"}, {"state", "running"}, {"networks", on_bridge}}),
            "VM web has no IP address: it runs without a NIC (kilnd's guest networking is off)");
}

}  // namespace
}  // namespace kiln::cli

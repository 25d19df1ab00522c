// A container's ports in the Docker Engine API's shapes: Config.ExposedPorts, HostConfig.PortBindings and
// PublishAllPorts read with dockerd's rules (moby's nat package) into what a start publishes, the
// PortPublications the VM gets, and the documents that show them (inspect's NetworkSettings.Ports, the
// `Ports` of GET /containers/json). Also `-p` specs as the docker CLI parses them (nat.ParsePortSpec).
// Plain functions and values; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json.h"
#include "daemon/state/vm_record.h"

namespace kiln::api::docker {

// A port of the container: "80/tcp".
struct ContainerPort {
  uint16_t port = 0;
  std::string protocol = "tcp";
  std::string key() const { return std::to_string(port) + "/" + protocol; }
  bool operator==(const ContainerPort&) const = default;
};

// One host binding a start makes.
struct PortBinding {
  ContainerPort container;
  std::string host_ip;  // "" = every address (also what an unparsable HostIp means to dockerd)
  // 0/0: a free port; first == last: that port; else the first free port of the range.
  uint16_t host_port_first = 0;
  uint16_t host_port_last = 0;
  bool operator==(const PortBinding&) const = default;
};

struct ContainerPorts {
  std::vector<ContainerPort> exposed;  // Config.ExposedPorts, ordered by key
  std::vector<PortBinding> bindings;   // what a start publishes, ordered by exposed port
};

// Reads a create body's Config (`raw_config`, which holds ExposedPorts) and HostConfig (PortBindings,
// PublishAllPorts). As dockerd: a PortBindings key must be one port ("invalid port specification:
// \"80-90\""); a HostPort is empty, a port or a range (with an ignored "/proto"); only exposed ports are
// published, each with its bindings under exactly the same key, or with PublishAllPorts a free port.
// kInvalidArgument in dockerd's words (HTTP 400). Kiln also refuses at create what dockerd refuses only at
// start: a published port over SCTP (Kiln's proxy has none) or another unknown protocol.
Result<ContainerPorts> parse_container_ports(const Json& raw_config, const Json& raw_host_config);

// What the VM is given: one publication per binding (a host port range: the first free port of it).
std::vector<daemon::PortPublication> port_publications(const ContainerPorts& ports);

// inspect's NetworkSettings.Ports: {"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"18080"}],"53/udp":null} for a
// running container (`published` with every host port chosen; an empty host_ip shows as 0.0.0.0); {} when
// it does not run, as dockerd.
Json network_settings_ports(const std::vector<ContainerPort>& exposed,
                            const std::vector<daemon::PortPublication>& published, bool running);
// GET /containers/json's Ports: [{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":18080,"Type":"tcp"}] and
// {"PrivatePort":53,"Type":"udp"} for an exposed port without binding; [] when it does not run.
Json ps_ports(const std::vector<ContainerPort>& exposed,
              const std::vector<daemon::PortPublication>& published, bool running);

// One `-p` value as the docker CLI reads it ("127.0.0.1:8000-8001:80-81/udp", "[::1]:80:80", "53/udp"):
// the PortBindings entries it makes, keyed "80/udp". Errors in the CLI's words ("invalid hostPort: x").
struct PortMapping {
  std::string port;  // "80/tcp"
  std::string host_ip;
  std::string host_port;  // "", "8080" or "8000-8010" (a range for one container port: a free one of it)
  bool operator==(const PortMapping&) const = default;
};
Result<std::vector<PortMapping>> parse_port_spec(std::string_view spec);

}  // namespace kiln::api::docker

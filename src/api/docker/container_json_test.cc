#include "api/docker/container_json.h"

#include <gtest/gtest.h>

#include "common/rfc3339.h"

// The expectations below are what dockerd 20.10.24 (Debian) printed, driven by the docker 28.2.2 CLI and by
// curl, for the same requests.

namespace kiln::api::docker {
namespace {

using daemon::containers::ContainerRecord;
using daemon::containers::ContainerState;
using daemon::containers::RestartPolicy;
using std::chrono::seconds;

// The body docker 28.2.2 sent for `docker create --name cli1 --network none -e A=1 -e B -l x=y
// --stop-timeout 5 --init --cap-add NET_ADMIN --cap-drop chown --read-only -m 64m --cpus 1.5
// --restart on-failure:3 -t -i -w /srv -u 1:2 -h hh --log-opt max-size=10m busybox sh -c 'echo hi'`.
constexpr std::string_view kCliBody = R"({"Hostname":"hh","Domainname":"","User":"1:2","AttachStdin":true,
"AttachStdout":true,"AttachStderr":true,"Tty":true,"OpenStdin":true,"StdinOnce":true,"Env":["A=1","B"],
"Cmd":["sh","-c","echo hi"],"Image":"busybox","Volumes":{},"WorkingDir":"/srv","Entrypoint":null,"OnBuild":null,
"Labels":{"x":"y"},"StopTimeout":5,"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"",
"Config":{"max-size":"10m"}},"NetworkMode":"none","PortBindings":{},"RestartPolicy":{"Name":"on-failure",
"MaximumRetryCount":3},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],
"CapAdd":["CAP_NET_ADMIN"],"CapDrop":["CAP_CHOWN"],"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],
"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"",
"Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":true,"SecurityOpt":null,"UTSMode":"","UsernsMode":"",
"ShmSize":0,"Isolation":"","CpuShares":0,"Memory":67108864,"NanoCpus":1500000000,"CgroupParent":"",
"BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],
"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,
"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,
"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],
"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null,
"Init":true},"NetworkingConfig":{"EndpointsConfig":{}}})";

// `docker inspect cli1`: HostConfig (Runtime and CgroupnsMode differ on purpose: kiln-vm; private), Config,
// NetworkSettings.
constexpr std::string_view kCliInspectHostConfig = R"({"Binds": null, "ContainerIDFile": "", "LogConfig":
{"Type": "json-file", "Config": {"max-size": "10m"}}, "NetworkMode": "none", "PortBindings": {}, "RestartPolicy":
{"Name": "on-failure", "MaximumRetryCount": 3}, "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null,
"CapAdd": ["CAP_NET_ADMIN"], "CapDrop": ["CAP_CHOWN"], "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
"DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "", "Links": null,
"OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false, "ReadonlyRootfs": true,
"SecurityOpt": null, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "runc", "ConsoleSize":
[0, 0], "Isolation": "", "CpuShares": 0, "Memory": 67108864, "NanoCpus": 1500000000, "CgroupParent": "",
"BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
"BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
"CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": null,
"DeviceRequests": null, "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 134217728,
"MemorySwappiness": null, "OomKillDisable": false, "PidsLimit": null, "Ulimits": [], "CpuCount": 0,
"CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": ["/proc/asound", "/proc/acpi",
"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
"/proc/scsi", "/sys/firmware"], "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
"/proc/sysrq-trigger"], "Init": true})";
constexpr std::string_view kCliInspectConfig = R"({"Hostname": "hh", "Domainname": "", "User": "1:2",
"AttachStdin": true, "AttachStdout": true, "AttachStderr": true, "Tty": true, "OpenStdin": true, "StdinOnce": true,
"Env": ["A=1", "B"], "Cmd": ["sh", "-c", "echo hi"], "Image": "busybox", "Volumes": null, "WorkingDir": "/srv",
"Entrypoint": null, "OnBuild": null, "Labels": {"x": "y"}, "StopTimeout": 5})";
constexpr std::string_view kCliInspectNetworkSettings =
    R"({"Bridge": "", "SandboxID": "", "HairpinMode": false,
"LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "", "SecondaryIPAddresses":
null, "SecondaryIPv6Addresses": null, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
"GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks":
{"none": {"IPAMConfig": null, "Links": null, "Aliases": null, "NetworkID": "", "EndpointID": "", "Gateway": "",
"IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
"MacAddress": "", "DriverOpts": null}}})";

const std::string kImageId = "sha256:87875e325748e048f6f87d495fdf2f19ec276cdf44e938f359b6df4f55622ab0";

// What the manager would make of a parsed request (the image has no Env/Cmd of its own here).
ContainerRecord record_from(const CreateContainerRequest& request, std::string id, std::string name) {
  ContainerRecord record;
  record.id = std::move(id);
  record.name = std::move(name);
  record.created = "2026-11-30T14:00:23.008446628Z";
  record.config = request.config;
  record.config.image_id = kImageId;
  if (record.config.hostname.empty()) record.config.hostname = record.id.substr(0, 12);
  record.host_config = request.host_config;
  record.raw_config = request.raw_config;
  record.raw_host_config = request.raw_host_config;
  record.raw_networking_config = request.raw_networking_config;
  return record;
}

std::string create_error(std::string_view body, std::string_view name = "") {
  auto result = parse_create_container(Json::parse(body), name, 2);
  if (result) return "(accepted)";
  EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument) << body;
  return result.error().message();
}

CreateContainerRequest create(std::string_view body, std::string_view name = "") {
  auto result = parse_create_container(Json::parse(body), name, 2);
  EXPECT_TRUE(result) << body << ": " << result.error().message();
  return result ? *result : CreateContainerRequest{};
}

TEST(ContainerJsonTest, ParsesTheDockerCliCreateBody) {
  auto request = parse_create_container(Json::parse(kCliBody), "cli1", 2);
  ASSERT_TRUE(request) << request.error().message();
  EXPECT_EQ(request->name, "cli1");
  const auto& config = request->config;
  EXPECT_EQ(config.image, "busybox");
  EXPECT_EQ(config.cmd, (std::vector<std::string>{"sh", "-c", "echo hi"}));
  EXPECT_TRUE(config.entrypoint.empty());
  EXPECT_EQ(config.env, (std::vector<std::string>{"A=1", "B"}));
  EXPECT_EQ(config.labels, (std::map<std::string, std::string>{{"x", "y"}}));
  EXPECT_EQ(config.stop_timeout, 5);
  EXPECT_EQ(config.user, "1:2");
  EXPECT_EQ(config.working_dir, "/srv");
  EXPECT_EQ(config.hostname, "hh");
  EXPECT_TRUE(config.tty && config.open_stdin && config.stdin_once && config.attach_stdin &&
              config.attach_stdout && config.attach_stderr);
  const auto& host = request->host_config;
  EXPECT_EQ(host.memory_bytes, 64U << 20);
  EXPECT_EQ(host.nano_cpus, 1'500'000'000U);
  EXPECT_EQ(host.restart_policy, (RestartPolicy{RestartPolicy::Kind::kOnFailure, 3}));
  EXPECT_EQ(host.cap_add, std::vector<std::string>{"CAP_NET_ADMIN"});
  EXPECT_EQ(host.cap_drop, std::vector<std::string>{"CAP_CHOWN"});
  EXPECT_TRUE(host.read_only_root);
  EXPECT_TRUE(host.init);
  EXPECT_FALSE(host.privileged);
  EXPECT_FALSE(host.auto_remove);
  EXPECT_EQ(host.log_config.type, "json-file");  // "" is the daemon's default
  EXPECT_EQ(host.log_config.options, (std::map<std::string, std::string>{{"max-size", "10m"}}));
  EXPECT_EQ(host.network_mode, "none");
  EXPECT_FALSE(request->raw_config.contains("HostConfig"));
  EXPECT_EQ(request->raw_config["Volumes"], Json::object());
  EXPECT_EQ(request->raw_networking_config, Json::parse(R"({"EndpointsConfig":{}})"));
}

TEST(ContainerJsonTest, InspectShowsWhatDockerdShowsForTheSameCreate) {
  auto record = record_from(create(kCliBody, "cli1"), std::string(64, 'a'), "cli1");
  Json inspect = container_inspect_json(record, {});

  Json expected_host = Json::parse(kCliInspectHostConfig);
  expected_host["Runtime"] = "kiln-vm";
  expected_host["CgroupnsMode"] = "private";
  EXPECT_EQ(inspect["HostConfig"], expected_host) << inspect["HostConfig"].dump();
  EXPECT_EQ(inspect["Config"], Json::parse(kCliInspectConfig)) << inspect["Config"].dump();
  EXPECT_EQ(inspect["NetworkSettings"], Json::parse(kCliInspectNetworkSettings));
  EXPECT_EQ(inspect["State"], Json::parse(R"({"Status": "created", "Running": false, "Paused": false,
      "Restarting": false, "OOMKilled": false, "Dead": false, "Pid": 0, "ExitCode": 0, "Error": "",
      "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"})"));
  EXPECT_EQ(inspect["Path"], "sh");
  EXPECT_EQ(inspect["Args"], Json::parse(R"(["-c", "echo hi"])"));
  EXPECT_EQ(inspect["Name"], "/cli1");
  EXPECT_EQ(inspect["Image"], kImageId);
  EXPECT_EQ(inspect["ExecIDs"], nullptr);
  EXPECT_EQ(inspect["Mounts"], Json::array());
  EXPECT_EQ(inspect["Platform"], "linux");
  EXPECT_FALSE(inspect.contains("SizeRw"));

  // Every top-level field dockerd shows for a container, and no others.
  std::set<std::string> keys;
  for (const auto& [key, value] : inspect.items()) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::string>{"AppArmorProfile", "Args",         "Config",      "Created",
                                         "Driver",          "ExecIDs",      "GraphDriver", "HostConfig",
                                         "HostnamePath",    "HostsPath",    "Id",          "Image",
                                         "LogPath",         "MountLabel",   "Mounts",      "Name",
                                         "NetworkSettings", "Path",         "Platform",    "ProcessLabel",
                                         "ResolvConfPath",  "RestartCount", "State"}));
}

TEST(ContainerJsonTest, InspectOfARawApiCreateKeepsWhatKilnOnlyRecords) {
  // curl -d '{"Image":"busybox","ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}},"HostConfig":{"CapAdd":
  // "net_admin","ConsoleSize":[30,100],"Init":null,"PortBindings":{"80/tcp":[{"HostPort":"8080"}]},
  // "Binds":["/tmp:/x"]}}' /containers/create?name=raw1
  auto request = create(R"({"Image":"busybox","ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}},
      "HostConfig":{"CapAdd":"net_admin","ConsoleSize":[30,100],"Init":null,
      "PortBindings":{"80/tcp":[{"HostPort":"8080"}]},"Binds":["/tmp:/x"]},"Bogus":1})",
                        "raw1");
  EXPECT_EQ(request.host_config.cap_add, std::vector<std::string>{"net_admin"});
  EXPECT_EQ(request.config.console_rows, 30);
  EXPECT_EQ(request.config.console_cols, 100);
  EXPECT_FALSE(request.host_config.init);
  auto record =
      record_from(request, "d863d39d3b8b76775638cd4c48ab8b0b9368efdc99a8928a1b6203c787251163", "raw1");
  record.config.cmd = {"sh"};  // the image's, merged by the manager
  ContainerInspectExtras extras;
  extras.exec_ids = {"e1"};
  extras.size_rw = 0;
  extras.size_root_fs = 1980000;
  extras.log_path = "/var/lib/kiln/containers/d863/d863-json.log";
  Json inspect = container_inspect_json(record, extras);
  EXPECT_EQ(inspect["Config"], Json::parse(R"({"Hostname":"d863d39d3b8b","Domainname":"","User":"",
      "AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"ExposedPorts":{"80/tcp":{}},"Tty":false,
      "OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["sh"],"Image":"busybox","Volumes":{"/data":{}},
      "WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{}})"));
  EXPECT_EQ(inspect["HostConfig"]["CapAdd"], Json::parse(R"(["net_admin"])"));  // as given, as dockerd shows
  EXPECT_EQ(inspect["HostConfig"]["ConsoleSize"], Json::parse("[30,100]"));
  EXPECT_EQ(inspect["HostConfig"]["PortBindings"], Json::parse(R"({"80/tcp":[{"HostPort":"8080"}]})"));
  EXPECT_EQ(inspect["HostConfig"]["Binds"], Json::parse(R"(["/tmp:/x"])"));
  EXPECT_FALSE(inspect["HostConfig"].contains("Init"));  // *bool, omitempty
  EXPECT_FALSE(inspect["HostConfig"].contains("Bogus"));
  EXPECT_EQ(inspect["HostConfig"]["NetworkMode"], "default");
  EXPECT_EQ(inspect["NetworkSettings"]["Networks"].size(), 1U);
  EXPECT_TRUE(inspect["NetworkSettings"]["Networks"].contains("bridge"));  // dockerd's name for "default"
  EXPECT_EQ(inspect["ExecIDs"], Json::parse(R"(["e1"])"));
  EXPECT_EQ(inspect["SizeRw"], 0);
  EXPECT_EQ(inspect["SizeRootFs"], 1980000);
  EXPECT_EQ(inspect["LogPath"], extras.log_path);
}

TEST(ContainerJsonTest, InspectStateOfRunningPausedRestartingAndExited) {
  ContainerRecord record = record_from(create(R"({"Image":"busybox"})"), std::string(64, 'b'), "p1");
  record.state = ContainerState::kPaused;
  record.pid = 17746;
  record.started_at = "2026-11-30T14:01:10.245268459Z";
  EXPECT_EQ(container_state_json(record), Json::parse(R"({"Status":"paused","Running":true,"Paused":true,
      "Restarting":false,"OOMKilled":false,"Dead":false,"Pid":17746,"ExitCode":0,"Error":"",
      "StartedAt":"2026-11-30T14:01:10.245268459Z","FinishedAt":"0001-01-01T00:00:00Z"})"));
  record.state = ContainerState::kRestarting;
  record.pid = 0;
  record.exit_code = 3;
  record.started_at = "2026-11-30T14:00:25.691266332Z";
  record.finished_at = "2026-11-30T14:00:25.711234534Z";
  EXPECT_EQ(container_state_json(record), Json::parse(R"({"Status":"restarting","Running":true,"Paused":false,
      "Restarting":true,"OOMKilled":false,"Dead":false,"Pid":0,"ExitCode":3,"Error":"",
      "StartedAt":"2026-11-30T14:00:25.691266332Z","FinishedAt":"2026-11-30T14:00:25.711234534Z"})"));
  record.state = ContainerState::kExited;
  record.exit_code = 2;
  Json exited = container_state_json(record);
  EXPECT_EQ(exited["Status"], "exited");
  EXPECT_EQ(exited["Running"], false);
  EXPECT_EQ(exited["ExitCode"], 2);
  record.state = ContainerState::kDead;
  EXPECT_EQ(container_state_json(record)["Dead"], true);
}

TEST(ContainerJsonTest, WrongTypesFailInGosWords) {
  struct Case {
    std::string_view body;
    std::string_view message;
  };
  const Case cases[] = {
      {R"({"Image":"busybox","Cmd":5})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Cmd of type string"},
      {R"({"Image":"busybox","Cmd":["a",1]})",
       "json: cannot unmarshal array into Go struct field ContainerConfigWrapper.Cmd of type string"},
      {R"({"Image":"busybox","Entrypoint":{"a":1}})",
       "json: cannot unmarshal object into Go struct field ContainerConfigWrapper.Entrypoint of type string"},
      {R"({"Image":"busybox","Env":"A=1"})",
       "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.Env of type []string"},
      {R"({"Image":"busybox","Env":[5]})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Env of type string"},
      {R"({"Image":"busybox","Labels":{"a":5}})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Labels of type string"},
      {R"({"Image":"busybox","Labels":[]})",
       "json: cannot unmarshal array into Go struct field ContainerConfigWrapper.Labels of type "
       "map[string]string"},
      {R"({"Image":"busybox","StopTimeout":"5"})",
       "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.StopTimeout of type int"},
      {R"({"Image":"busybox","StopTimeout":5.5})",
       "json: cannot unmarshal number 5.5 into Go struct field ContainerConfigWrapper.StopTimeout of type "
       "int"},
      {R"({"Image":"busybox","Tty":"yes"})",
       "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.Tty of type bool"},
      {R"({"Image":"busybox","Tty":1})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Tty of type bool"},
      {R"({"Image":5})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Image of type string"},
      {R"({"Image":"busybox","Hostname":5})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Hostname of type string"},
      {R"([])", "json: cannot unmarshal array into Go value of type runconfig.ContainerConfigWrapper"},
      {R"({"Image":"busybox","HostConfig":5})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.HostConfig of type "
       "container.HostConfig"},
      {R"({"Image":"busybox","HostConfig":{"Memory":"1g"}})",
       "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"},
      {R"({"Image":"busybox","HostConfig":{"Memory":1e7}})",
       "json: cannot unmarshal number 10000000.0 into Go struct field HostConfig.HostConfig.Memory of type "
       "int64"},
      {R"({"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":5}}})",
       "json: cannot unmarshal number into Go struct field RestartPolicy.HostConfig.RestartPolicy.Name of "
       "type "
       "string"},
      {R"({"Image":"busybox","HostConfig":{"RestartPolicy":{"MaximumRetryCount":"1"}}})",
       "json: cannot unmarshal string into Go struct field RestartPolicy.HostConfig.RestartPolicy."
       "MaximumRetryCount of type int"},
      {R"({"Image":"busybox","HostConfig":{"RestartPolicy":[]}})",
       "json: cannot unmarshal array into Go struct field HostConfig.HostConfig.RestartPolicy of type "
       "container.RestartPolicy"},
      {R"({"Image":"busybox","HostConfig":{"LogConfig":{"Config":{"a":1}}}})",
       "json: cannot unmarshal number into Go struct field LogConfig.HostConfig.LogConfig.Config of type "
       "string"},
      {R"({"Image":"busybox","HostConfig":{"CapAdd":[1]}})",
       "json: cannot unmarshal array into Go struct field HostConfig.HostConfig.CapAdd of type string"},
      {R"({"Image":"busybox","HostConfig":{"ConsoleSize":"x"}})",
       "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.ConsoleSize of type "
       "[2]uint"},
      {R"({"Image":"busybox","HostConfig":{"ConsoleSize":[1.5,2]}})",
       "json: cannot unmarshal number 1.5 into Go struct field HostConfig.HostConfig.ConsoleSize of type "
       "uint"},
      {R"({"Image":"busybox","HostConfig":{"ConsoleSize":[-1,2]}})",
       "json: cannot unmarshal number -1 into Go struct field HostConfig.HostConfig.ConsoleSize of type "
       "uint"},
      {R"({"Image":"busybox","HostConfig":{"CpuCount":1.5}})",
       "json: cannot unmarshal number 1.5 into Go struct field HostConfig.HostConfig.CpuCount of type int64"},
      {R"({"Image":"busybox","HostConfig":{"AutoRemove":"true"}})",
       "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.AutoRemove of type bool"},
      {R"({"Image":"busybox","HostConfig":{"Init":"x"}})",
       "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Init of type bool"},
      {R"({"Image":"busybox","HostConfig":{"NetworkMode":5}})",
       "json: cannot unmarshal number into Go struct field HostConfig.HostConfig.NetworkMode of type "
       "container.NetworkMode"},
      {R"({"Image":"busybox","NetworkingConfig":5})",
       "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.NetworkingConfig of type "
       "network.NetworkingConfig"},
      {R"({"Image":"busybox","NetworkingConfig":{"EndpointsConfig":5}})",
       "json: cannot unmarshal number into Go struct field NetworkingConfig.NetworkingConfig.EndpointsConfig "
       "of "
       "type map[string]*network.EndpointSettings"},
  };
  for (const auto& [body, message] : cases) EXPECT_EQ(create_error(body), message) << body;
}

TEST(ContainerJsonTest, DockerdsChecksWithItsMessages) {
  struct Case {
    std::string_view body;
    std::string_view message;
  };
  const Case cases[] = {
      {R"({})", "Config cannot be empty in order to create a container"},
      {R"({"HostConfig":{"Memory":0}})", "Config cannot be empty in order to create a container"},
      {R"({"Image":""})", "No command specified"},
      {R"({"Image":"busybox","Env":[""]})", "invalid environment variable: "},
      {R"({"Image":"busybox","Env":["=x"]})", "invalid environment variable: =x"},
      {R"({"Image":"busybox","Env":["A=1",null]})", "invalid environment variable: "},
      {R"({"Image":"busybox","HostConfig":{"Memory":1000}})", "Minimum memory limit allowed is 6MB"},
      {R"({"Image":"busybox","HostConfig":{"Memory":-1}})", "Minimum memory limit allowed is 6MB"},
      {R"({"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}})",
       "can't create 'AutoRemove' container with restart policy"},
      {R"({"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}})",
       "invalid restart policy 'sometimes'"},
      {R"({"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"always","MaximumRetryCount":2}}})",
       "maximum retry count cannot be used with restart policy 'always'"},
      {R"({"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":-2}}})",
       "maximum retry count cannot be negative"},
      {R"({"Image":"busybox","HostConfig":{"CapAdd":["FOO"]}})",
       R"(invalid CapAdd: unknown capability: "CAP_FOO")"},
      {R"({"Image":"busybox","HostConfig":{"CapDrop":["CAP_FOO"]}})",
       R"(invalid CapDrop: unknown capability: "CAP_FOO")"},
      {R"({"Image":"busybox","HostConfig":{"LogConfig":{"Type":"nosuch"}}})",
       R"(error looking up logging plugin nosuch: plugin "nosuch" not found)"},
      {R"({"Image":"busybox","HostConfig":{"LogConfig":{"Type":"json-file","Config":{"foo":"1"}}}})",
       "unknown log opt 'foo' for json-file log driver"},
      {R"({"Image":"busybox","HostConfig":{"NanoCpus":1000000000000}})",
       "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"},
  };
  for (const auto& [body, message] : cases) EXPECT_EQ(create_error(body), message) << body;
  EXPECT_EQ(create_error(R"({"Image":"busybox"})", "bad!"),
            "Invalid container name (bad!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
  // Kiln's own refusals: a driver it does not write, a container without an image.
  EXPECT_EQ(create_error(R"({"Image":"busybox","HostConfig":{"LogConfig":{"Type":"syslog"}}})"),
            R"(logging driver "syslog" is not supported by Kiln: use json-file or none)");
  EXPECT_EQ(create_error(R"({"Cmd":["sh"]})"),
            "No image specified: a Kiln container's root filesystem is its image");
  EXPECT_EQ(create_error(R"({"Image":"busybox","HostConfig":{"NanoCpus":-1}})"),
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available");
  EXPECT_NE(create_error(R"({"Image":"busybox","HostConfig":{"CpuCount":-1}})"), "(accepted)");
}

TEST(ContainerJsonTest, AcceptsWhatDockerdAccepts) {
  // A string Cmd is one argument (strslice), not split.
  EXPECT_EQ(create(R"({"Image":"busybox","Cmd":"echo hi"})").config.cmd, std::vector<std::string>{"echo hi"});
  EXPECT_TRUE(create(R"({"Image":"busybox","Cmd":[]})").config.cmd.empty());
  auto nulls = create(R"({"Image":"busybox","Cmd":null,"Entrypoint":null,"Env":null,"Labels":null,
      "StopTimeout":null,"Tty":null,"HostConfig":null,"NetworkingConfig":null})");
  EXPECT_TRUE(nulls.config.cmd.empty());
  EXPECT_EQ(nulls.config.stop_timeout, std::nullopt);
  EXPECT_EQ(create(R"({"Image":"busybox","HostConfig":{"CapAdd":"NET_ADMIN"}})").host_config.cap_add,
            std::vector<std::string>{"NET_ADMIN"});
  EXPECT_EQ(create(R"({"Image":"busybox","HostConfig":{"CapAdd":["net_admin","all"]}})").host_config.cap_add,
            (std::vector<std::string>{"net_admin", "all"}));
  auto console = create(R"({"Image":"busybox","HostConfig":{"ConsoleSize":[1]}})");
  EXPECT_EQ(console.config.console_rows, 1);
  EXPECT_EQ(console.config.console_cols, 0);
  EXPECT_EQ(
      create(R"({"Image":"busybox","HostConfig":{"LogConfig":{"Type":""}}})").host_config.log_config.type,
      "json-file");
  EXPECT_EQ(
      create(R"({"Image":"busybox","HostConfig":{"LogConfig":{"Type":"none"}}})").host_config.log_config.type,
      "none");
  EXPECT_EQ(create(R"({"Image":"busybox","HostConfig":{"Memory":6291456}})").host_config.memory_bytes,
            6291456U);
  EXPECT_EQ(
      create(R"({"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":""}}})").host_config.restart_policy,
      RestartPolicy{});
  EXPECT_TRUE(create(R"({"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"no"}}})")
                  .host_config.auto_remove);
  // Go matches field names case-insensitively; unknown fields are ignored.
  auto lower = create(R"({"image":"busybox","cmd":["true"],"hostconfig":{"memory":7340032},"Colour":"red"})");
  EXPECT_EQ(lower.config.image, "busybox");
  EXPECT_EQ(lower.config.cmd, std::vector<std::string>{"true"});
  EXPECT_EQ(lower.host_config.memory_bytes, 7340032U);
  EXPECT_EQ(lower.raw_config, Json::parse(R"({"Image":"busybox","Cmd":["true"]})"));
  EXPECT_EQ(create(R"({"Image":"busybox"})", "/web").name, "web");
  EXPECT_EQ(create(R"({"Image":"busybox"})").name, "");
}

TEST(ContainerJsonTest, HumanDurationIsGoUnits) {
  // go-units duration_test.go.
  using std::chrono::hours;
  using std::chrono::milliseconds;
  using std::chrono::minutes;
  const auto day = hours(24);
  const auto week = 7 * day;
  const auto month = 30 * day;
  const auto year = 365 * day;
  struct Case {
    std::chrono::nanoseconds duration;
    std::string_view text;
  };
  const Case cases[] = {
      {milliseconds(450), "Less than a second"},
      {seconds(1), "1 second"},
      {seconds(45), "45 seconds"},
      {seconds(59), "59 seconds"},
      {seconds(60), "About a minute"},
      {minutes(3), "3 minutes"},
      {minutes(35) + seconds(40), "35 minutes"},
      {minutes(59), "59 minutes"},
      {hours(1), "About an hour"},
      {hours(1) + minutes(29), "About an hour"},
      {hours(1) + minutes(31), "2 hours"},
      {hours(3) + minutes(29), "3 hours"},
      {hours(3) + minutes(31), "4 hours"},
      {hours(24), "24 hours"},
      {day + hours(12), "36 hours"},
      {2 * day, "2 days"},
      {13 * day + hours(5), "13 days"},
      {2 * week, "2 weeks"},
      {4 * week + 3 * day, "4 weeks"},
      {month + 2 * week, "6 weeks"},
      {2 * month, "2 months"},
      {5 * month + 2 * week, "5 months"},
      {24 * month, "24 months"},
      {24 * month + 2 * week, "2 years"},
      {3 * year + 2 * month, "3 years"},
      {-seconds(5), "Less than a second"},
  };
  for (const auto& [duration, text] : cases) EXPECT_EQ(human_duration(duration), text) << duration.count();
}

std::chrono::system_clock::time_point at(std::string_view rfc3339, std::chrono::milliseconds plus) {
  return std::chrono::system_clock::from_time_t(*parse_rfc3339(rfc3339)) + plus;
}

ContainerRecord exited_ex1() {
  // docker run --name ex1 --network none busybox sh -c "echo 'a b'; exit 2"
  auto request = create(R"({"Image":"busybox","Cmd":["sh","-c","echo 'a b'; exit 2"],
      "HostConfig":{"NetworkMode":"none"}})",
                        "ex1");
  auto record =
      record_from(request, "d441b0f0d75b6204bb5afcd687004e02f5fb8536289cbfe3b1dd0aacd1fa16cb", "ex1");
  record.created = "2026-11-30T14:01:10.279952930Z";
  record.state = ContainerState::kExited;
  record.exit_code = 2;
  record.started_at = "2026-11-30T14:01:10.420164474Z";
  record.finished_at = "2026-11-30T14:01:10.422765664Z";
  return record;
}

TEST(ContainerJsonTest, SummaryAsDockerPsReadsIt) {
  ContainerRecord record = exited_ex1();
  Json summary = container_summary_json(record, at("2026-11-30T14:01:14Z", std::chrono::milliseconds(500)));
  Json expected = Json::parse(R"({"Id":"d441b0f0d75b6204bb5afcd687004e02f5fb8536289cbfe3b1dd0aacd1fa16cb",
      "Names":["/ex1"],"Image":"busybox",
      "ImageID":"sha256:87875e325748e048f6f87d495fdf2f19ec276cdf44e938f359b6df4f55622ab0",
      "Command":"sh -c 'echo 'a b'; exit 2'","Created":1796047270,"Ports":[],"Labels":{},"State":"exited",
      "Status":"Exited (2) 4 seconds ago","HostConfig":{"NetworkMode":"none"},"NetworkSettings":{"Networks":
      {"none":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"","EndpointID":"","Gateway":"",
      "IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,
      "MacAddress":"","DriverOpts":null}}},"Mounts":[]})");
  EXPECT_EQ(summary, expected) << summary.dump();
  ContainerSummaryExtras sizes;
  sizes.size_rw = 12;
  sizes.size_root_fs = 1980000;
  Json sized = container_summary_json(record, at("2026-11-30T14:01:14Z", {}), sizes);
  EXPECT_EQ(sized["SizeRw"], 12);
  EXPECT_EQ(sized["SizeRootFs"], 1980000);
}

TEST(ContainerJsonTest, StatusTextForEachState) {
  ContainerRecord record = exited_ex1();
  const std::string started = "2026-11-30T14:01:10.245268459Z";
  record.started_at = started;
  record.finished_at.clear();
  record.state = ContainerState::kRunning;
  // 0.9 s after the start: dockerd's "Up Less than a second".
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:01:11Z", std::chrono::milliseconds(100))),
            "Up Less than a second");
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:01:16Z", std::chrono::milliseconds(300))),
            "Up 6 seconds");
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:03:11Z", {})), "Up 2 minutes");
  record.state = ContainerState::kPaused;
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:01:16Z", std::chrono::milliseconds(300))),
            "Up 6 seconds (Paused)");
  record.state = ContainerState::kRestarting;
  record.exit_code = 3;
  record.finished_at = "2026-11-30T14:01:12.000000000Z";
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:01:15Z", {})), "Restarting (3) 3 seconds ago");
  record.state = ContainerState::kExited;
  record.exit_code = 0;
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:04:12Z", {})), "Exited (0) 3 minutes ago");
  EXPECT_EQ(container_status_text(record, at("2026-11-30T16:04:12Z", {})), "Exited (0) 2 hours ago");
  record.state = ContainerState::kRemoving;
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:04:12Z", {})), "Removal In Progress");
  record.state = ContainerState::kDead;
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:04:12Z", {})), "Dead");
  record.state = ContainerState::kCreated;
  record.started_at.clear();
  record.finished_at.clear();
  EXPECT_EQ(container_status_text(record, at("2026-11-30T14:04:12Z", {})), "Created");
}

TEST(ContainerJsonTest, CommandTextQuotesArgumentsWithSpaces) {
  ContainerRecord record;
  record.config.cmd = {"sleep", "1000"};
  EXPECT_EQ(container_command_text(record), "sleep 1000");
  record.config.cmd = {"echo hi"};  // Cmd:"echo hi" is one word
  EXPECT_EQ(container_command_text(record), "echo hi");
  record.config.entrypoint = {"/bin/sh"};
  record.config.cmd = {"-c", "true"};
  EXPECT_EQ(container_command_text(record), "/bin/sh -c true");
  EXPECT_EQ(container_path(record.config), "/bin/sh");
  EXPECT_EQ(container_args(record.config), (std::vector<std::string>{"-c", "true"}));
  record.config = {};
  EXPECT_EQ(container_command_text(record), "");
}

// ---- ps filters -----------------------------------------------------------------------------------------

std::string url_encode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

Result<Filters> filters(std::string_view json) {
  auto query = http::QueryParams::parse("filters=" + url_encode(json));
  if (!query) return query.error();
  return Filters::parse(*query, container_filter_names());
}

struct Containers {
  std::vector<ContainerRecord> all;

  Containers() {
    auto add = [&](std::string id, std::string name, ContainerState state, std::string created,
                   std::map<std::string, std::string> labels = {}) {
      ContainerRecord record;
      record.id = std::move(id);
      record.name = std::move(name);
      record.state = state;
      record.created = std::move(created);
      record.config.labels = std::move(labels);
      record.config.image = "busybox";
      record.config.image_id = kImageId;
      record.host_config.network_mode = "none";
      if (state != ContainerState::kCreated) record.started_at = "2026-11-30T14:01:10.420164474Z";
      all.push_back(record);
    };
    add("dc87573456e65841fc7a59a7730fae250640c732a45d5faddd74a3c851cc74d2", "c1", ContainerState::kCreated,
        "2026-11-30T14:00:23.008446628Z");
    add("d94725865a888d7efe32e0e63ce58a46a27709d8099aec1d1ee546ddfa3a51f0", "up1", ContainerState::kRunning,
        "2026-11-30T14:01:09.900000000Z", {{"a", "b"}, {"c", ""}});
    add("9ece32d7a7a48e5a8eb2499571f9af84d5a2778e9dca427c124bb718a8fdbfb2", "p1", ContainerState::kPaused,
        "2026-11-30T14:01:10.100000000Z");
    add("d441b0f0d75b6204bb5afcd687004e02f5fb8536289cbfe3b1dd0aacd1fa16cb", "ex1", ContainerState::kExited,
        "2026-11-30T14:01:10.279952930Z");
    all.back().exit_code = 2;
    all.front().host_config.network_mode = "default";
  }

  Result<ContainerOrder> lookup(std::string_view id_or_name) const {
    for (const auto& record : all) {
      if (record.name == id_or_name || record.id == id_or_name)
        return ContainerOrder{record.id, record.created};
    }
    return Error::not_found(fmt::format("No such container: {}", id_or_name));
  }

  // "busybox" and the id or a prefix of it name the one image; anything else none.
  static std::vector<std::string> resolve(std::string_view reference) {
    if (reference == "busybox" || reference == "busybox:latest" ||
        (reference.size() >= 6 && kImageId.substr(7).starts_with(reference)) || reference == kImageId)
      return {kImageId};
    return {};
  }

  // The names `docker ps -a --filter` lists, or the error.
  std::string names(std::string_view json) const {
    auto parsed = filters(json);
    if (!parsed) return "error: " + parsed.error().message();
    auto filter = parse_container_filters(
        *parsed, [this](std::string_view value) { return lookup(value); }, &Containers::resolve);
    if (!filter) return "error: " + filter.error().message();
    std::string result;
    for (const auto& record : all) {
      if (!matches(*filter, record)) continue;
      if (!result.empty()) result += ' ';
      result += record.name;
    }
    return result;
  }
};

TEST(ContainerFiltersTest, MatchLikeDockerd) {
  Containers containers;
  EXPECT_EQ(containers.names("{}"), "c1 up1 p1 ex1");
  EXPECT_EQ(containers.names(R"({"name":["up1"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"name":["^/up"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"name":["^up"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"name":["p1$"]})"), "up1 p1");
  EXPECT_EQ(containers.names(R"({"name":["P1"]})"), "");
  EXPECT_EQ(containers.names(R"({"name":["[["]})"), "");  // does not compile: matches nothing
  EXPECT_EQ(containers.names(R"({"name":{"c1":true,"ex1":true}})"), "c1 ex1");
  EXPECT_EQ(containers.names(R"({"id":["d4"]})"), "ex1");
  EXPECT_EQ(containers.names(R"({"id":["e32d7a"]})"), "");  // a prefix, not a substring
  EXPECT_EQ(containers.names(R"({"id":["^9ece"]})"), "");   // nor a regular expression
  EXPECT_EQ(containers.names(R"({"label":["a=b"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"label":["c"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"label":["c="]})"), "up1");
  EXPECT_EQ(containers.names(R"({"label":["a=b","c"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"label":["a=c"]})"), "");
  EXPECT_EQ(containers.names(R"({"label":["a!=b"]})"), "");
  EXPECT_EQ(containers.names(R"({"status":["paused"]})"), "p1");
  EXPECT_EQ(containers.names(R"({"status":["running"]})"), "up1");
  EXPECT_EQ(containers.names(R"({"status":["created","exited"]})"), "c1 ex1");
  EXPECT_EQ(containers.names(R"({"status":["created","exited"],"label":["a=b"]})"), "");
  EXPECT_EQ(containers.names(R"({"exited":["2"]})"), "ex1");
  EXPECT_EQ(containers.names(R"({"exited":["0"]})"), "");  // created and running containers never match
  EXPECT_EQ(containers.names(R"({"status":["exited"],"exited":["2"]})"), "ex1");
  EXPECT_EQ(containers.names(R"({"before":["up1"]})"), "c1");
  EXPECT_EQ(containers.names(R"({"since":["p1"]})"), "ex1");
  EXPECT_EQ(containers.names(R"({"since":["c1"],"before":["ex1"]})"), "up1 p1");
  EXPECT_EQ(containers.names(R"({"ancestor":["87875e"]})"), "c1 up1 p1 ex1");
  EXPECT_EQ(containers.names(R"({"ancestor":["busybox:latest"]})"), "c1 up1 p1 ex1");
  EXPECT_EQ(containers.names(R"({"ancestor":["busybox:1"]})"), "");
  EXPECT_EQ(containers.names(R"({"ancestor":["nosuch"]})"), "");
  EXPECT_EQ(containers.names(R"({"network":["none"]})"), "up1 p1 ex1");
  EXPECT_EQ(containers.names(R"({"network":["bridge"]})"), "c1");
  EXPECT_EQ(containers.names(R"({"is-task":["true"]})"), "");
  EXPECT_EQ(containers.names(R"({"is-task":["false"]})"), "c1 up1 p1 ex1");
  EXPECT_EQ(containers.names(R"({"health":["none"]})"), "c1 up1 p1 ex1");
  EXPECT_EQ(containers.names(R"({"health":["healthy"]})"), "");
  EXPECT_EQ(containers.names(R"({"volume":["x"]})"), "");
  EXPECT_EQ(containers.names(R"({"publish":["80"]})"), "");
  EXPECT_EQ(containers.names(R"({"expose":["80"]})"), "");
  EXPECT_EQ(containers.names(R"({"isolation":["x"]})"), "c1 up1 p1 ex1");
}

TEST(ContainerFiltersTest, StoppedContainersOnlyWithAllLimitOrStatus) {
  // dockerd without ?all=1: {} -> running and paused; {"status":["exited"]} -> ex1; since/before and exited
  // do not widen the list; ?limit=2 does.
  Containers containers;
  auto listed_names = [&](std::string_view json, bool all, int64_t limit) {
    auto filter = parse_container_filters(
        *filters(json), [&](std::string_view value) { return containers.lookup(value); },
        &Containers::resolve);
    std::string result;
    for (const auto& record : containers.all) {
      if (!listed(*filter, record, all, limit)) continue;
      if (!result.empty()) result += ' ';
      result += record.name;
    }
    return result;
  };
  EXPECT_EQ(listed_names("{}", false, 0), "up1 p1");
  EXPECT_EQ(listed_names("{}", true, 0), "c1 up1 p1 ex1");
  EXPECT_EQ(listed_names("{}", false, 2), "c1 up1 p1 ex1");
  EXPECT_EQ(listed_names(R"({"status":["exited"]})", false, 0), "ex1");
  EXPECT_EQ(listed_names(R"({"since":["c1"]})", false, 0), "up1 p1");
  EXPECT_EQ(listed_names(R"({"exited":["2"]})", false, 0), "");
}

TEST(ContainerFiltersTest, RefusalsInDockerdsWords) {
  Containers containers;
  EXPECT_EQ(containers.names(R"({"colour":["x"]})"), "error: invalid filter 'colour'");
  EXPECT_EQ(containers.names(R"({"status":["bogus"]})"), "error: invalid filter 'status=bogus'");
  EXPECT_EQ(containers.names(R"({"status":["Running"]})"), "error: invalid filter 'status=Running'");
  EXPECT_EQ(containers.names(R"({"exited":["x"]})"),
            R"(error: invalid filter 'exited=x': strconv.Atoi: parsing "x": invalid syntax)");
  EXPECT_EQ(containers.names(R"({"exited":["1.5"]})"),
            R"(error: invalid filter 'exited=1.5': strconv.Atoi: parsing "1.5": invalid syntax)");
  EXPECT_EQ(containers.names(R"({"health":["x"]})"), "error: Unrecognised filter value for health: x");
  EXPECT_EQ(containers.names(R"({"before":["nosuch"]})"), "error: No such container: nosuch");
  EXPECT_EQ(containers.names(R"({"since":["nosuch"]})"), "error: No such container: nosuch");
  EXPECT_EQ(containers.names(R"({"is-task":["maybe"]})").substr(0, 23), "error: invalid filter '");
  auto parsed = filters(R"({"before":["nosuch"]})");
  auto result = parse_container_filters(
      *parsed, [&](std::string_view value) { return containers.lookup(value); }, &Containers::resolve);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kNotFound);
}

}  // namespace
}  // namespace kiln::api::docker

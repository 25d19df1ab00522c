// /_ping, /version, /info and /system/df: what the docker CLI asks before anything else (version negotiation)
// and what `docker version`, `docker info` and `docker system df` print.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>

#include "api/docker/container_json.h"
#include "api/docker/docker_routes.h"
#include "api/docker/image_json.h"
#include "common/rfc3339.h"
#include "kiln/version.h"

namespace kiln::api::docker {
namespace {

using http::Reply;
using http::Request;

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "kiln";
  return name;
}

Json version_json(const DockerContext& context) {
  Json engine_details = {{"ApiVersion", kApiVersion},
                         {"MinAPIVersion", kMinApiVersion},
                         {"Os", "linux"},
                         {"Arch", "amd64"},
                         {"KernelVersion", context.guest_kernel_release},
                         {"Engine", context.engine_name},
                         {"Accelerator", context.accelerator}};
  return {{"Platform", {{"Name", "Kiln"}}},
          {"Components",
           Json::array({{{"Name", "Engine"}, {"Version", kVersion}, {"Details", engine_details}},
                        {{"Name", "kiln-guest-kernel"},
                         {"Version", context.guest_kernel_release},
                         {"Details", {{"Note", "every container runs this kernel in its own VM"}}}}})},
          {"Version", kVersion},
          {"ApiVersion", kApiVersion},
          {"MinAPIVersion", kMinApiVersion},
          {"GitCommit", ""},
          {"GoVersion", ""},
          {"Os", "linux"},
          {"Arch", "amd64"},
          // Containers run the guest kernel, not the host's: that is the kernel a user of this daemon gets.
          {"KernelVersion", context.guest_kernel_release},
          {"BuildTime", ""}};
}

Result<Json> info_json(DockerContext& context) {
  auto images = KILN_TRY(context.images.list());
  int running = 0, paused = 0, stopped = 0;
  auto containers = KILN_TRY(context.containers.list());
  for (const auto& container : containers) {
    switch (container.state) {
      case daemon::containers::ContainerState::kRunning:
      case daemon::containers::ContainerState::kRestarting:
        ++running;
        break;
      case daemon::containers::ContainerState::kPaused:
        ++paused;
        break;
      default:
        ++stopped;
    }
  }
  std::string runtime_note =
      fmt::format("a {} VM per container ({})", context.engine_name, context.accelerator);
  return Json{
      {"ID", context.daemon_id},
      {"Containers", containers.size()},
      {"ContainersRunning", running},
      {"ContainersPaused", paused},
      {"ContainersStopped", stopped},
      {"Images", images.size()},
      {"Driver", "kiln-erofs"},
      {"DriverStatus", Json::array({Json::array({"Image layers", "one read-only EROFS image per image"}),
                                    Json::array({"Writable layer", "a sparse ext4 disk per container"})})},
      {"Plugins",
       {{"Volume", Json::array({"local"})},
        {"Network", Json::array({"bridge", "host", "null"})},
        {"Authorization", nullptr},
        {"Log", {"json-file"}}}},
      {"MemoryLimit", true},
      {"SwapLimit", false},
      {"CpuCfsPeriod", false},
      {"CpuCfsQuota", false},
      {"CPUShares", false},
      {"CPUSet", false},
      {"PidsLimit", false},
      {"OomKillDisable", false},
      {"IPv4Forwarding", false},
      {"BridgeNfIptables", false},
      {"BridgeNfIp6tables", false},
      {"Debug", false},
      {"NFd", 0},
      {"NGoroutines", 0},
      {"SystemTime", now_rfc3339(TimePrecision::kNanos)},
      {"LoggingDriver", "json-file"},
      {"CgroupDriver", "none"},
      {"CgroupVersion", "2"},
      {"NEventsListener", 0},
      {"KernelVersion", context.guest_kernel_release},
      {"OperatingSystem", "Kiln (every container is a VM)"},
      {"OSVersion", std::string(kVersion)},
      {"OSType", "linux"},
      {"Architecture", "x86_64"},
      {"IndexServerAddress", "https://index.docker.io/v1/"},
      {"RegistryConfig",
       {{"AllowNondistributableArtifactsCIDRs", Json::array()},
        {"AllowNondistributableArtifactsHostnames", Json::array()},
        {"InsecureRegistryCIDRs", {"127.0.0.0/8"}},
        {"IndexConfigs", Json::object()},
        {"Mirrors", Json::array()}}},
      {"NCPU", context.host_cpus},
      {"MemTotal", context.host_memory_bytes},
      {"GenericResources", nullptr},
      {"DockerRootDir", context.root},
      {"HttpProxy", ""},
      {"HttpsProxy", ""},
      {"NoProxy", ""},
      {"Name", host_name()},
      {"Labels", Json::array()},
      {"ExperimentalBuild", false},
      {"ServerVersion", kVersion},
      {"Runtimes", {{"kiln-vm", {{"path", "kilnd"}, {"runtimeArgs", Json::array({runtime_note})}}}}},
      {"DefaultRuntime", "kiln-vm"},
      {"Swarm",
       {{"NodeID", ""},
        {"NodeAddr", ""},
        {"LocalNodeState", "inactive"},
        {"ControlAvailable", false},
        {"Error", ""},
        {"RemoteManagers", nullptr}}},
      {"LiveRestoreEnabled", true},
      {"Isolation", ""},
      {"InitBinary", ""},
      {"ContainerdCommit", {{"ID", ""}, {"Expected", ""}}},
      {"RuncCommit", {{"ID", ""}, {"Expected", ""}}},
      {"InitCommit", {{"ID", ""}, {"Expected", ""}}},
      {"SecurityOptions", {"name=vm"}},
      {"Warnings", Json::array()}};
}

}  // namespace

void add_system_routes(DockerRoutes& routes, DockerContext& context) {
  // dockerd answers GET with "OK" and HEAD with no body; both never cached.
  auto ping = [](Request& request) -> Result<Reply> {
    http::Response response =
        request.method == "HEAD" ? http::text_response(200, "") : http::text_response(200, "OK");
    response.headers.set("Cache-Control", "no-cache, no-store, must-revalidate");
    response.headers.set("Pragma", "no-cache");
    response.headers.set("Builder-Version", "1");
    response.headers.set("Swarm", "inactive");
    return Reply(std::move(response));
  };
  routes.add("GET", "/_ping", ping);
  routes.add("HEAD", "/_ping", ping);

  routes.add("GET", "/version", [&context](Request&) -> Result<Reply> {
    return Reply(http::json_response(200, version_json(context)));
  });

  routes.add("GET", "/info", [&context](Request&) -> Result<Reply> {
    return Reply(http::json_response(200, KILN_TRY(info_json(context))));
  });

  routes.add("GET", "/system/df", [&context](Request&) -> Result<Reply> {
    Json images = Json::array();
    int64_t layers_size = 0;
    for (const auto& image : KILN_TRY(context.images.list())) {
      images.push_back(image_summary_json(image));
      layers_size += image.record.size;
    }
    Json containers = Json::array();
    auto now = std::chrono::system_clock::now();
    for (const auto& container : KILN_TRY(context.containers.list()))
      containers.push_back(container_summary_json(container, now));
    return Reply(http::json_response(200, {{"LayersSize", layers_size},
                                           {"Images", images},
                                           {"Containers", containers},
                                           {"Volumes", KILN_TRY(volumes_disk_usage(context))},
                                           {"BuildCache", Json::array()}}));
  });
}

}  // namespace kiln::api::docker

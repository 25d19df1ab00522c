// `kiln vm create`: POST /v1/vms from flags (sizes as people type them, host paths made absolute against the
// working directory, since kilnd resolves them elsewhere), then print the new VM's id as docker create does.
#include <fmt/core.h>

#include <filesystem>

#include "cli/vm_client.h"
#include "cli/vm_networking.h"
#include "common/units.h"

namespace kiln::cli {
namespace {

struct CreateOptions {
  std::string name;
  std::optional<unsigned> cpus;
  std::string memory;
  std::string disk;
  std::string from_dir;
  std::string from_tar;
  std::string image;
  std::string clone;
  std::string kernel;
  std::vector<std::string> labels;
  std::vector<std::string> volumes;
  std::vector<std::string> networks;  // --network NAME[:IPV4] or none; none given: kilnd's default network
  std::vector<std::string> publish;   // -p [HOST_IP:][HOST_PORT:]GUEST_PORT[/tcp|udp]
  bool start = false;
};

std::string absolute_path(const std::string& path) {
  std::error_code error;
  auto absolute = std::filesystem::absolute(path, error);
  return error ? path : absolute.lexically_normal().string();
}

Result<uint64_t> size_mib(const std::string& text, std::string_view flag) {
  uint64_t bytes = KILN_TRY_CONTEXT(parse_size(text, uint64_t{1} << 20), std::string(flag));
  return bytes >> 20;
}

// HOST:GUEST[:ro|:rw], as `kiln vm run -v` takes it; a bare GUEST name mounts at /mnt/hgfs/NAME in the VM.
Result<Json> shared_folder(const std::string& volume) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t colon; (colon = volume.find(':', start)) != std::string::npos; start = colon + 1) {
    parts.push_back(volume.substr(start, colon - start));
  }
  parts.push_back(volume.substr(start));
  bool read_only = false;
  if (parts.size() == 3 && (parts[2] == "ro" || parts[2] == "rw")) {
    read_only = parts[2] == "ro";
    parts.pop_back();
  }
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
    return Error::invalid_argument(fmt::format("-v {}: expected HOSTDIR:GUESTPATH[:ro]", volume));
  }
  return Json{{"host_path", absolute_path(parts[0])}, {"guest_path", parts[1]}, {"read_only", read_only}};
}

Result<Json> create_body(const CreateOptions& options) {
  Json body = Json::object();
  if (!options.name.empty()) body["name"] = options.name;
  if (options.cpus) body["cpus"] = *options.cpus;
  if (!options.memory.empty()) body["memory_mib"] = KILN_TRY(size_mib(options.memory, "--memory"));
  if (!options.disk.empty()) body["disk_mib"] = KILN_TRY(size_mib(options.disk, "--disk"));
  if (!options.from_dir.empty()) body["source"] = {{"directory", absolute_path(options.from_dir)}};
  if (!options.from_tar.empty()) body["source"] = {{"tarball", absolute_path(options.from_tar)}};
  if (!options.image.empty()) body["source"] = {{"image", options.image}};
  if (!options.clone.empty()) body["source"] = {{"vm", options.clone}};
  if (!options.kernel.empty()) body["kernel"] = absolute_path(options.kernel);
  if (!options.labels.empty()) {
    Json labels = Json::object();
    for (const auto& label : options.labels) {
      auto equals = label.find('=');
      if (equals == 0) return Error::invalid_argument(fmt::format("-l {}: expected KEY=VALUE", label));
      labels[label.substr(0, equals)] = equals == std::string::npos ? "" : label.substr(equals + 1);
    }
    body["labels"] = labels;
  }
  if (!options.volumes.empty()) {
    Json folders = Json::array();
    for (const auto& volume : options.volumes) folders.push_back(KILN_TRY(shared_folder(volume)));
    body["shared_folders"] = folders;
  }
  if (!options.networks.empty()) body["networks"] = KILN_TRY(networks_json(options.networks));
  if (!options.publish.empty()) {
    Json ports = Json::array();
    for (const auto& spec : options.publish) ports.push_back(KILN_TRY(publication_json(spec)));
    if (body.contains("networks") && body["networks"].empty()) {
      return Error::invalid_argument(
          "-p needs a network: a VM created with --network none has no NIC to publish");
    }
    body["ports"] = ports;
  }
  return body;
}

Result<int> create(const VmApi& api, const CreateOptions& options) {
  Json body = KILN_TRY(create_body(options));
  Json vm = KILN_TRY(api.call("POST", "/v1/vms", body));
  std::string id = vm.value("id", "");
  fmt::print("{}\n", id);
  (void)std::fflush(stdout);
  if (options.start) KILN_TRY(api.call("POST", vm_target(id, "start")));
  return 0;
}

}  // namespace

void register_vm_create_command(CLI::App& vm, std::shared_ptr<DaemonAddress> address, Action& chosen) {
  auto options = std::make_shared<CreateOptions>();
  auto* cmd = vm.add_subcommand("create", "Create a VM (its root disk is built; the VM is left stopped)");
  cmd->fallthrough();
  cmd->add_option("name", options->name, "Name (default: generated)");
  cmd->add_option("--cpus", options->cpus, "Virtual CPUs (default 1)")->check(whole_number(1, 1024));
  cmd->add_option("-m,--memory", options->memory, "Memory, e.g. 512M or 1G (a bare number is MiB)");
  cmd->add_option("--disk", options->disk, "Root disk size, e.g. 1G (a bare number is MiB)");
  auto* from_dir = cmd->add_option("--from-dir", options->from_dir, "Root filesystem from a host directory");
  auto* from_tar = cmd->add_option("--from-tar", options->from_tar, "Root filesystem from a tarball");
  auto* image = cmd->add_option("--image", options->image, "Root filesystem from an image");
  auto* clone = cmd->add_option("--clone", options->clone, "Copy another (stopped) VM's root disk");
  from_dir->excludes(from_tar, image, clone);
  from_tar->excludes(image, clone);
  image->excludes(clone);
  cmd->add_option("--kernel", options->kernel, "Boot this kernel instead of Kiln's");
  cmd->add_option("-l,--label", options->labels, "Label KEY=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("-v,--volume", options->volumes,
                  "Share a host directory: HOSTDIR:GUESTPATH[:ro] (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--network", options->networks,
                  "Join a network: NAME or NAME:IPV4 (repeatable; none: no NIC; default: bridge)")
      ->allow_extra_args(false);
  cmd->add_option("-p,--publish", options->publish,
                  "Publish a guest port on the host: [HOST_IP:][HOST_PORT:]GUEST_PORT[/tcp|udp] "
                  "(repeatable; no HOST_PORT: any free port)")
      ->allow_extra_args(false);
  cmd->add_flag("--start", options->start, "Start the VM once created");
  cmd->callback([options, address, &chosen] {
    chosen = with_api(address, [options](const VmApi& api) { return create(api, *options); });
  });
}

}  // namespace kiln::cli

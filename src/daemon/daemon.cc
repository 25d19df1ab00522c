#include "daemon/daemon.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <random>

#include "api/docker/docker_api.h"
#include "api/http/server.h"
#include "api/rest/rest_api.h"
#include "common/log.h"
#include "common/temp_dir.h"
#include "daemon/clone_warm_up.h"
#include "daemon/containers/container_manager.h"
#include "daemon/event_bus.h"
#include "daemon/networks/fabric_adapter.h"
#include "daemon/networks/network_manager.h"
#include "daemon/networks/service_adapters.h"
#include "daemon/state/vm_store.h"
#include "daemon/vm_manager.h"
#include "daemon/volumes/volume_manager.h"
#include "daemon/warm_pool.h"
#include "engine/engine_factory.h"
#include "engine/template_pool.h"
#include "guest/guest_kit.h"
#include "guest/kernel_version.h"
#include "image/image_store.h"
#include "kiln/version.h"
#include "net/fabric.h"
#include "net/outbound_nat.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;

// One kilnd per root: a second one would fight over the VMs and the database.
Result<UniqueFd> lock_root(const std::string& root) {
  std::string path = root + "/kilnd.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Error::last_os_error(fmt::format("open {}", path));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error::already_exists(fmt::format("another kilnd is already running with --root {}", root));
    }
    return Error::last_os_error(fmt::format("lock {}", path));
  }
  return fd;
}

Result<void> write_pid_file(const std::string& path) {
  return write_file_atomic(path, fmt::format("{}\n", ::getpid()));
}

Result<UniqueFd> termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  // Blocked before any thread starts, so every thread inherits the mask and the signalfd gets them.
  if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return Error::last_os_error("pthread_sigmask");
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!fd) return Error::last_os_error("signalfd");
  return fd;
}

// The daemon's ID in the Docker API's /info: made once per --root, kept across restarts as dockerd keeps its.
Result<std::string> daemon_id(const std::string& root) {
  std::string path = root + "/daemon-id";
  if (auto existing = read_file(path); existing && !existing->empty()) {
    std::string id = *existing;
    while (!id.empty() && id.back() == '\n') id.pop_back();
    return id;
  }
  std::random_device random;
  std::string id;
  for (int i = 0; i < 4; ++i) id += fmt::format("{:08x}", random());
  KILN_TRY(write_file_atomic(path, id + "\n"));
  return id;
}

// dockerd's -G: unix sockets owned by that group (mode 0660), so its members need no root. The default group
// ("docker") may not exist; then root keeps them.
Result<void> give_socket_to_group(const api::http::Endpoint& endpoint, const std::string& group,
                                  bool group_was_asked_for) {
  if (endpoint.kind != api::http::Endpoint::Kind::kUnix || group.empty()) return ok();
  struct group entry {};
  struct group* found = nullptr;
  std::vector<char> buffer(16384);
  ::getgrnam_r(group.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (found == nullptr) {
    if (!group_was_asked_for) return ok();
    return Error::invalid_argument(fmt::format("-G {}: no such group", group));
  }
  if (::chown(endpoint.path.c_str(), static_cast<uid_t>(-1), found->gr_gid) != 0)
    return Error::last_os_error(fmt::format("chown {} to group {}", endpoint.path, group));
  return ok();
}

uint64_t host_memory_mib() {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) >> 20;
}

Result<int> serve(const DaemonOptions& options, const std::function<void(const Error*)>& ready) {
  UniqueFd signals = KILN_TRY(termination_signals());
  std::error_code error;
  fs::create_directories(options.root, error);
  if (error)
    return Error::invalid_argument(fmt::format("cannot create --root {}: {}", options.root, error.message()));
  fs::create_directories(options.run_dir, error);
  if (error) {
    return Error::invalid_argument(
        fmt::format("cannot create --run-dir {}: {}", options.run_dir, error.message()));
  }
  ::chmod(options.root.c_str(), 0711);
  UniqueFd root_lock = KILN_TRY(lock_root(options.root));

  auto store = KILN_TRY(VmStore::open(options.root));
  EventBus events;
  // Docker volumes: <root>/volumes/<name>/_data, as dockerd's local driver lays them out.
  auto volumes =
      KILN_TRY(volumes::VolumeManager::open(store->database(), options.root + "/volumes", &events));
  auto engine = KILN_TRY(
      engine::make_engine({.qemu_binary = options.qemu, .tcg_code_cache_mib = options.tcg_code_cache_mib}));
  guest::GuestKit kit = KILN_TRY(guest::resolve_guest_kit({.kernel = options.kernel}));
  auto images = KILN_TRY(image::ImageStore::open(
      {.root = options.root,
       .insecure_registries = options.insecure_registries,
       .max_parallel_downloads = options.max_concurrent_downloads,
       .on_event = [&events](const image::ImageEvent& event) {
         events.publish({.type = "image",
                         .action = event.action,
                         .id = event.id,
                         .name = event.name,
                         // dockerd names a deleted image by its ID
                         .attributes = {{"name", event.name.empty() ? event.id : event.name}}});
       }}));

  // Guest networking: every network lives in Kiln's own network namespace, pinned under the run dir so it
  // (and the VMs' taps in it) outlives a kilnd restart (docs/networking.md). Without it VMs get no NIC.
  std::unique_ptr<net::Fabric> fabric;
  if (options.network == "on") {
    auto opened = net::Fabric::open({.namespace_path = options.run_dir + "/net/netns",
                                     .host_loopback = options.host_loopback,
                                     .state_dir = options.run_dir + "/net"});
    if (opened) {
      fabric = std::move(*opened);
    } else {
      log::warn("guest networking is off (VMs get no NIC)", {{"error", opened.error().message()}});
    }
  }

  // Docker networks (kiln.db) and, with the fabric, their bridges, DNS servers (on each gateway, forwarding
  // to the host's resolvers) and the VMs' addresses, taps and published ports. Without the fabric: records
  // only, and VMs get no NIC.
  networks::NetworkManagerConfig network_config{.events = &events};
  std::unique_ptr<networks::FabricAdapter> fabric_adapter;
  std::unique_ptr<net::DnsServer> dns_server;
  std::unique_ptr<networks::DnsAdapter> dns_adapter;
  std::unique_ptr<net::PortProxy> port_proxy;
  std::unique_ptr<networks::ProxyAdapter> proxy_adapter;
  if (fabric) {
    fabric_adapter = std::make_unique<networks::FabricAdapter>(*fabric);
    dns_server = std::make_unique<net::DnsServer>();
    dns_adapter = std::make_unique<networks::DnsAdapter>(*dns_server);
    port_proxy = std::make_unique<net::PortProxy>(
        [&fabric](int domain, int type) { return fabric->socket(domain, type); });
    proxy_adapter = std::make_unique<networks::ProxyAdapter>(*port_proxy);
    network_config.fabric = fabric_adapter.get();
    network_config.dns = dns_adapter.get();
    network_config.ports = proxy_adapter.get();
    network_config.outbound_cidr = fabric->config().outbound_cidr;
  }
  auto network_manager =
      KILN_TRY(networks::NetworkManager::open(store->database(), network_config, store.get()));

  unsigned cpus = static_cast<unsigned>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  std::unique_ptr<TemplatePool> templates;
  std::unique_ptr<WarmPool> warm_pool;
  if (options.boot == "fork") {
    TemplatePoolConfig pool{.dir = options.root + "/templates", .run_dir = options.run_dir + "/templates"};
    // A template's NIC slots get taps attached to nothing: its guest never sends anything that matters.
    if (fabric) pool.scratch_tap = [&fabric] { return fabric->open_detached_tap(); };
    templates = std::make_unique<TemplatePool>(std::move(pool), *engine);
    WarmPoolConfig warm{.dir = options.run_dir + "/pool",
                        .size = options.warm_pool,
                        // Leave the host a tenth of its memory (1-4 GiB) before idle clones take any.
                        .min_available_mib = std::clamp<uint64_t>(host_memory_mib() / 10, 1024, 4096)};
    if (fabric) {
      warm.spare_tap = [&fabric]() -> Result<NicTap> {
        NicTap tap;
        tap.fd = KILN_TRY(fabric->open_detached_tap(&tap.name));
        return tap;
      };
    }
    // Each idle clone first runs a container workload on scratch disks (clone_warm_up.h).
    auto warm_up =
        std::make_shared<CloneWarmUp>(options.run_dir + "/pool-warm-up", VmManagerConfig{}.busybox_binary);
    warm.warm_up = [warm_up](const engine::VmSpec& spec, engine::VmInstance& vm, agent::AgentHub& hub) {
      return warm_up->run(spec, vm, hub);
    };
    warm_pool = std::make_unique<WarmPool>(std::move(warm), *engine, *templates);
    // A killed kilnd's idle clones map templates too: gone before templates are pruned.
    warm_pool->clear_leftovers();
  }
  auto vms = KILN_TRY(VmManager::create({.root = options.root,
                                         .run_dir = options.run_dir,
                                         .kernel = kit.kernel,
                                         .initramfs = kit.initramfs,
                                         .host_cpus = cpus,
                                         .host_memory_mib = host_memory_mib(),
                                         .images = images.get(),
                                         .templates = templates.get(),
                                         .pool = warm_pool.get(),
                                         .networking = fabric ? network_manager.get() : nullptr},
                                        *store, events, *engine));
  KILN_TRY(vms->recover());
  if (templates) {
    // Only now is it known which templates running VMs (adopted above) still map.
    std::set<std::string> in_use;
    for (const auto& vm : KILN_TRY(vms->list({}))) {
      if (has_monitor(vm.state) && !vm.template_key.empty()) in_use.insert(vm.template_key);
    }
    templates->prune(in_use);
  }
  containers::ContainerManagerConfig container_config{.root = options.root};
  if (fabric)
    container_config.host_gateway_ip = KILN_TRY(net::outbound_gateway(fabric->config().outbound_cidr));
  auto containers = KILN_TRY(containers::ContainerManager::create(
      std::move(container_config), store->database(), *vms, *images, *volumes, events));
  KILN_TRY(containers->recover());

  api::rest::ExecRegistry execs;
  // Uploads (image load/import) and saves are staged here; whatever a crash left behind goes now.
  std::string scratch_dir = options.root + "/tmp";
  KILN_TRY(remove_tree(scratch_dir));
  fs::create_directories(scratch_dir, error);
  if (error)
    return Error::invalid_argument(fmt::format("cannot create {}: {}", scratch_dir, error.message()));
  api::rest::ApiContext context{.vms = *vms,
                                .events = events,
                                .execs = execs,
                                .images = *images,
                                .scratch_dir = scratch_dir,
                                .engine_name = std::string(engine->name()),
                                .accelerator = std::string(engine::to_string(engine->accelerator()))};
  api::http::Router router;
  api::rest::add_kiln_routes(router, context);
  auto server = KILN_TRY(api::http::Server::create(std::move(router)));
  std::vector<std::string> hosts = options.hosts;
  if (hosts.empty()) hosts.push_back("unix://" + options.run_dir + "/kiln.sock");
  std::string socket_group = options.socket_group.empty() ? "docker" : options.socket_group;
  for (const auto& host : hosts) {
    auto bound = KILN_TRY_CONTEXT(server->listen(host), fmt::format("listen on {}", host));
    KILN_TRY(give_socket_to_group(bound, socket_group, !options.socket_group.empty()));
    log::info("listening", {{"endpoint", bound.to_string()}});
  }

  // The Docker Engine API on its own socket(s): the docker CLI's DOCKER_HOST points here.
  std::string guest_kernel_release = guest::kernel_release(kit.kernel).value_or("unknown");
  api::docker::DockerContext docker_context{.images = *images,
                                            .containers = *containers,
                                            .volumes = *volumes,
                                            .events = events,
                                            .scratch_dir = scratch_dir,
                                            .root = options.root,
                                            .engine_name = std::string(engine->name()),
                                            .accelerator = context.accelerator,
                                            .guest_kernel_release = guest_kernel_release,
                                            .daemon_id = KILN_TRY(daemon_id(options.root)),
                                            .host_cpus = cpus,
                                            .host_memory_bytes = host_memory_mib() << 20,
                                            .networks = network_manager.get(),
                                            .vms = vms.get()};
  auto docker_server = KILN_TRY(api::http::Server::create(api::docker::make_docker_router(docker_context)));
  std::vector<std::string> docker_hosts = options.docker_hosts;
  if (docker_hosts.empty()) docker_hosts.push_back("unix://" + options.run_dir + "/docker.sock");
  for (const auto& host : docker_hosts) {
    auto bound = KILN_TRY_CONTEXT(docker_server->listen(host), fmt::format("listen on {}", host));
    KILN_TRY(give_socket_to_group(bound, socket_group, !options.socket_group.empty()));
    log::info("Docker Engine API listening", {{"endpoint", bound.to_string()}});
  }
  std::unique_ptr<api::http::Server> appcatalyst_server;
  if (options.appcatalyst_port > 0) {
    api::http::Router appcatalyst_router(api::rest::appcatalyst_error_body);
    api::rest::add_appcatalyst_routes(appcatalyst_router, context);
    appcatalyst_server = KILN_TRY(api::http::Server::create(std::move(appcatalyst_router)));
    auto bound = KILN_TRY_CONTEXT(
        appcatalyst_server->listen(fmt::format("tcp://127.0.0.1:{}", options.appcatalyst_port)),
        "listen for the AppCatalyst API");
    log::info("AppCatalyst API listening", {{"endpoint", bound.to_string()}});
  }
  KILN_TRY(write_pid_file(options.run_dir + "/kilnd.pid"));
  log::info("kilnd ready", {{"version", kVersion}, {"root", options.root}, {"engine", engine->name()}});
  ready(nullptr);

  signalfd_siginfo info{};
  while (::read(signals.get(), &info, sizeof info) < 0 && errno == EINTR) {
  }
  log::info("kilnd shutting down; VMs keep running", {{"signal", static_cast<int>(info.ssi_signo)}});
  events.close();
  if (appcatalyst_server) appcatalyst_server->stop();
  docker_server->stop();
  server->stop();
  containers->shutdown();
  vms->shutdown();
  containers->join();
  fs::remove(options.run_dir + "/kilnd.pid", error);
  return 0;
}

}  // namespace

int run_daemon(const DaemonOptions& options, const std::function<void(const Error*)>& ready) {
  auto code = serve(options, ready);
  if (!code) {
    log::error("kilnd failed", {{"error", code.error().message()}});
    ready(&code.error());
    return 1;
  }
  return *code;
}

}  // namespace kiln::daemon

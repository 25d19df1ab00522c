// The Docker Engine API served by kilnd on its own socket (docker.sock), so the unmodified docker CLI and
// SDKs work against Kiln. Routes translate HTTP into calls on kilnd's managers (the image store, the
// container manager and the volume manager) and back, in dockerd's shapes and wording. Paths may carry a
// "/v1.NN" version prefix; the range served is [kMinApiVersion, kApiVersion]. Routes run on the server's
// connection threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "api/http/router.h"
#include "daemon/containers/container_manager.h"
#include "daemon/event_bus.h"
#include "daemon/networks/network_manager.h"
#include "daemon/vm_manager.h"
#include "daemon/volumes/volume_manager.h"
#include "image/image_store.h"

namespace kiln::api::docker {

// The newest API version served (Docker 24's) and the oldest accepted (what dockerd still accepts). Clients
// negotiate down to kApiVersion from the API-Version header of /_ping.
inline constexpr std::string_view kApiVersion = "1.43";
inline constexpr std::string_view kMinApiVersion = "1.24";

struct DockerContext {
  image::ImageStore& images;
  daemon::containers::ContainerManager& containers;
  daemon::volumes::VolumeManager& volumes;
  daemon::EventBus& events;          // image (and later container) events for /events
  std::string scratch_dir;           // uploads and saves in flight (<root>/tmp)
  std::string root;                  // DockerRootDir in /info
  std::string engine_name;           // "qemu"
  std::string accelerator;           // "kvm" or "tcg"
  std::string guest_kernel_release;  // what `uname -r` says inside a container
  std::string daemon_id;             // stable across restarts: ID in /info
  unsigned host_cpus = 1;
  uint64_t host_memory_bytes = 0;
  // Docker networks (/networks, containers' --network); nullptr: /networks answers 501 and containers keep
  // the NetworkSettings they had before networking.
  daemon::networks::NetworkManager* networks = nullptr;
  // For NetworkSettings: a running container's addresses are its VM's NICs. nullptr: none shown.
  daemon::VmManager* vms = nullptr;
};

// A router in the Docker API's shape (errors {"message"}, version prefixes stripped and checked) with every
// Docker route kilnd serves.
http::Router make_docker_router(DockerContext& context);

// "1.43" -> {1, 43}; nullopt when it is not MAJOR.MINOR.
std::optional<std::pair<int, int>> parse_api_version(std::string_view text);

}  // namespace kiln::api::docker

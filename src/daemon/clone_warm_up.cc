#include "daemon/clone_warm_up.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <filesystem>

#include "common/child_process.h"
#include "common/log.h"
#include "daemon/vm_manager.h"
#include "daemon/vm_slot.h"
#include "image/image_store.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;

constexpr auto kStepTimeout = std::chrono::seconds(30);
constexpr uint64_t kScratchLayerBytes = uint64_t{64} << 20;

}  // namespace

Result<void> CloneWarmUp::prepare() {
  if (prepared_) return ok();
  const std::string& dir = dir_;
  const std::string& busybox = busybox_;
  std::error_code error;
  fs::remove_all(dir, error);
  std::string tree = dir + "/tree";
  for (const char* sub : {"/bin", "/etc", "/tmp"}) fs::create_directories(tree + sub, error);
  if (error) return Error::internal(fmt::format("create {}: {}", tree, error.message()));
  fs::copy_file(busybox, tree + "/bin/busybox", error);
  if (error) return Error::internal(fmt::format("copy {}: {}", busybox, error.message()));
  for (const char* applet : {"true", "sh"}) fs::create_symlink("busybox", tree + "/bin/" + applet, error);
  if (error) return Error::internal(fmt::format("link busybox applets in {}: {}", tree, error.message()));
  std::string image = dir + "/image.erofs";
  KILN_TRY_CONTEXT(run_command_checked({"mkfs.erofs", "--quiet", image, tree}), "mkfs.erofs");
  fs::remove_all(tree, error);
  std::string layer = dir + "/layer.ext4";
  KILN_TRY(image::ImageStore::create_writable_layer(
      layer, kScratchLayerBytes, {std::string(kLayerUpperDir), std::string(kLayerWorkDir)}));
  image_ = image;
  layer_ = layer;
  prepared_ = true;
  return ok();
}

Result<bool> CloneWarmUp::run(const engine::VmSpec& spec, engine::VmInstance& vm, agent::AgentHub& hub) {
  if (spec.disks.size() != 2 || !spec.disks[0].read_only || spec.disks[1].read_only || spec.root_disk >= 0)
    return false;
  std::lock_guard lock(mutex_);
  if (unavailable_) return false;
  if (auto prepared = prepare(); !prepared) {
    // Without scratch disks (no busybox on the host, say) clones go unwarmed rather than unpooled.
    unavailable_ = true;
    log::warn("warm pool clones get no warm-up: its scratch disks could not be made",
              {{"dir", dir_}, {"error", prepared.error().message()}});
    return false;
  }
  KILN_TRY(vm.swap_disk(0, {.path = image_, .read_only = true}));
  KILN_TRY(vm.swap_disk(1, {.path = layer_}));
  // The container root exactly as a start assembles it (no bind mounts), through CLONE_INIT as a start does;
  // no identity: the start that takes the clone gives it its own (and reseeds its RNG).
  VmRecord shape;
  shape.source.kind = RootSource::Kind::kContainer;
  std::vector<agent::MountRequest> mounts = container_root_mounts(shape);
  KILN_TRY(hub.call([&](agent::AgentConnection& connection) {
    return connection.clone_init({.reseed = false, .mounts = mounts}, kStepTimeout);
  }));
  // A container process: namespaces, the root pivot, the files Docker provides, exec, exit.
  agent::ProcessSpec process{
      .argv = {"/bin/true"},
      .container = agent::ContainerSpec{.root = std::string(kContainerRootInGuest),
                                        .hostname = "warm-up",
                                        .files = {{"etc/hostname", "warm-up\n"},
                                                  {"etc/hosts", "127.0.0.1\tlocalhost\n"},
                                                  {"etc/resolv.conf", ""}}}};
  agent::ExecHandle handle = KILN_TRY(hub.exec(process, agent::ExecIo{}));
  ExitStatus status = KILN_TRY(handle.wait(kStepTimeout));
  if (!status.success()) return Error::internal(fmt::format("the warm-up process {}", status.describe()));
  // Innermost first; the agent syncs a filesystem before it unmounts it.
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    KILN_TRY(hub.call(
        [&](agent::AgentConnection& connection) { return connection.unmount(it->target, kStepTimeout); }));
  }
  KILN_TRY(vm.swap_disk(1, {}));
  KILN_TRY(vm.swap_disk(0, {.read_only = true}));
  return true;
}

}  // namespace kiln::daemon

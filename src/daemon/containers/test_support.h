// A whole container stack for unit tests, on the FakeEngine: an image store holding one small image
// ("test:latest", imported from a tar of one file), kiln.db, a VolumeManager, a VmManager and a
// ContainerManager. Nothing is booted: the fake agent runs `echo`, `true` and `false` and reports anything
// else as not found.
#pragma once

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "common/child_process.h"
#include "common/temp_dir.h"
#include "daemon/containers/container_manager.h"
#include "daemon/event_bus.h"
#include "daemon/state/vm_store.h"
#include "daemon/vm_manager.h"
#include "daemon/volumes/volume_manager.h"
#include "daemon/warm_pool.h"
#include "engine/fake/fake_engine.h"
#include "engine/template_pool.h"
#include "image/image_store.h"

namespace kiln::daemon::containers::testing {

class ContainerStack {
 public:
  // kTestImage is imported with this tag.
  static constexpr const char* kTestImage = "test:latest";

  // `fork`: container VMs fork from templates (a TemplatePool under <dir>/root/templates), as kilnd's
  // default; `pool`: with a warm pool of that many idle clones per shape (its config as given, dir and size
  // filled in).
  static Result<std::unique_ptr<ContainerStack>> create(bool fork = false, size_t pool = 0,
                                                        WarmPoolConfig pool_config = {}) {
    auto stack = std::make_unique<ContainerStack>();
    stack->dir_ = std::make_unique<TempDir>(KILN_TRY(TempDir::create("container-stack-")));
    std::string root = stack->dir_->path() + "/root";
    std::string tree = stack->dir_->path() + "/tree";
    std::filesystem::create_directories(root);
    std::filesystem::create_directories(tree + "/etc");
    std::ofstream(tree + "/etc/hostname") << "image\n";
    std::string tarball = stack->dir_->path() + "/rootfs.tar";
    KILN_TRY(run_command_checked({"tar", "-C", tree, "-cf", tarball, "."}));
    stack->images_ = KILN_TRY(image::ImageStore::open({.root = root}));
    KILN_TRY(stack->images_->import(tarball, KILN_TRY(image::ImageRef::parse(kTestImage))));
    stack->store_ = KILN_TRY(VmStore::open(root));
    stack->volumes_ =
        KILN_TRY(volumes::VolumeManager::open(stack->store_->database(), root + "/volumes", &stack->events_));
    std::filesystem::create_directories(stack->dir_->path() + "/run");
    if (fork) {
      stack->templates_ = std::make_unique<TemplatePool>(
          TemplatePoolConfig{.dir = root + "/templates", .run_dir = stack->dir_->path() + "/run/templates"},
          stack->engine_);
      if (pool > 0) {
        pool_config.dir = stack->dir_->path() + "/run/pool";
        pool_config.size = pool;
        pool_config.agent_timeout = std::chrono::seconds(30);
        stack->pool_ = std::make_unique<WarmPool>(std::move(pool_config), stack->engine_, *stack->templates_);
      }
    }
    stack->vms_ = KILN_TRY(VmManager::create({.root = root,
                                              .run_dir = stack->dir_->path() + "/run",
                                              .kernel = stack->dir_->path() + "/vmlinuz",
                                              .initramfs = stack->dir_->path() + "/initramfs",
                                              .host_cpus = 4,
                                              .host_memory_mib = 8192,
                                              .images = stack->images_.get(),
                                              .templates = stack->templates_.get(),
                                              .pool = stack->pool_.get()},
                                             *stack->store_, stack->events_, stack->engine_));
    stack->containers_ = KILN_TRY(
        ContainerManager::create({.root = root, .default_memory_mib = 128}, stack->store_->database(),
                                 *stack->vms_, *stack->images_, *stack->volumes_, stack->events_));
    return stack;
  }

  ~ContainerStack() {
    if (containers_) containers_->shutdown();
    if (vms_) vms_->shutdown();
    if (containers_) containers_->join();
  }

  // A container of kTestImage running `echo hi` (`customize` changes the request), created, started and
  // waited for until its main process ended with 0: its VM as it last started.
  Result<VmRecord> run_echo(const std::function<void(NewContainer&)>& customize = {}) {
    NewContainer request;
    request.config.image = kTestImage;
    request.config.cmd = {"echo", "hi"};
    request.cmd_given = true;
    if (customize) customize(request);
    auto created = KILN_TRY(containers_->create(request));
    KILN_TRY(containers_->start(created.id));
    int code = KILN_TRY(containers_->wait(created.id, WaitCondition::kNotRunning, {}));
    if (code != 0) return Error::internal(fmt::format("the container exited with {}", code));
    return vms_->inspect(created.vm_id);
  }

  const std::string& dir() const { return dir_->path(); }
  image::ImageStore& images() { return *images_; }
  VmManager& vms() { return *vms_; }
  ContainerManager& containers() { return *containers_; }
  volumes::VolumeManager& volumes() { return *volumes_; }
  EventBus& events() { return events_; }
  engine::fake::FakeEngine& engine() { return engine_; }
  TemplatePool* templates() { return templates_.get(); }
  WarmPool* pool() { return pool_.get(); }

 private:
  std::unique_ptr<TempDir> dir_;
  EventBus events_;
  engine::fake::FakeEngine engine_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<VmStore> store_;
  std::unique_ptr<volumes::VolumeManager> volumes_;
  std::unique_ptr<TemplatePool> templates_;
  std::unique_ptr<WarmPool> pool_;
  std::unique_ptr<VmManager> vms_;
  std::unique_ptr<ContainerManager> containers_;
};

}  // namespace kiln::daemon::containers::testing

// A VmManager on the FakeEngine for unit tests: a scratch root and run directory, kiln.db, an event bus, and
// a directory to build root disks from. Nothing is booted.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/temp_dir.h"
#include "daemon/event_bus.h"
#include "daemon/state/vm_store.h"
#include "daemon/vm_manager.h"
#include "engine/fake/fake_engine.h"

namespace kiln::daemon::testing {

class VmManagerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("vm-manager-test-").value());
    config_.root = dir_->path() + "/root";
    config_.run_dir = dir_->path() + "/run";
    rootfs_ = dir_->path() + "/rootfs";
    // The fake engine boots nothing: kernel and initramfs only need to be named.
    config_.kernel = dir_->path() + "/vmlinuz";
    config_.initramfs = dir_->path() + "/initramfs.cpio";
    config_.host_cpus = 4;
    config_.host_memory_mib = 8192;
    config_.agent_timeout = std::chrono::seconds(30);
    for (const auto& dir : {config_.root, config_.run_dir, rootfs_}) std::filesystem::create_directories(dir);
    store_ = VmStore::open(config_.root).value();
    start_manager();
  }

  // (Again, after a test replaced the manager: a kilnd restart.)
  void start_manager() {
    auto manager = VmManager::create(config_, *store_, events_, engine_);
    ASSERT_TRUE(manager) << manager.error().message();
    manager_ = std::move(*manager);
  }

  std::unique_ptr<TempDir> dir_;
  std::string rootfs_;  // an empty directory: a root disk source
  VmManagerConfig config_;
  // Declared before the manager, which refers to them, so they outlive it.
  engine::fake::FakeEngine engine_;
  EventBus events_;
  std::unique_ptr<VmStore> store_;
  std::unique_ptr<VmManager> manager_;
};

}  // namespace kiln::daemon::testing

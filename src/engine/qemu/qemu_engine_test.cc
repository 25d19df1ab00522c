// QemuEngine without a VM: what the template key depends on. A script stands in for the QEMU binary (the
// engine asks it only for its version).
#include "engine/qemu/qemu_engine.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/temp_dir.h"

namespace kiln::engine::qemu {
namespace {

class QemuEngineKey : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.emplace(TempDir::create("kiln-qemu-engine-test-").value());
    std::string qemu = dir_->path() + "/qemu-system-x86_64";
    ASSERT_TRUE(write_file_atomic(qemu, "#!/bin/sh\necho 'QEMU emulator version 7.2.22 (test)'\n"));
    ASSERT_EQ(::chmod(qemu.c_str(), 0755), 0);
    ASSERT_TRUE(write_file_atomic(dir_->path() + "/kernel", "kernel"));
    auto engine = QemuEngine::create(qemu, Accelerator::kTcg);
    ASSERT_TRUE(engine) << engine.error().message();
    engine_ = std::move(*engine);
  }

  VmSpec spec(const std::string& runtime_dir) const {
    return {.name = "vm",
            .kernel = dir_->path() + "/kernel",
            .runtime_dir = runtime_dir,
            .disks = {{.read_only = true, .placeholder_bytes = 1 << 30}, {.placeholder_bytes = 1 << 30}},
            .shares = {{.tag = "kilnshare0", .host_path = runtime_dir + "/share"}}};
  }

  std::optional<TempDir> dir_;
  std::unique_ptr<QemuEngine> engine_;
};

TEST_F(QemuEngineKey, HostSideShareDetailsDoNotChangeTheKey) {
  auto plain = engine_->template_key(spec("/run/a"));
  ASSERT_TRUE(plain) << plain.error().message();
  // A warm pool's clone: its share takes entries later, its disks come later.
  VmSpec pool = spec("/run/b");
  pool.shares[0].late_entries = true;
  pool.shares[0].guest_ownership = true;
  pool.shares[0].entries = {{.name = "data", .source = "/srv/data"}};
  EXPECT_EQ(engine_->template_key(pool).value_or("?"), *plain);
  VmSpec other = spec("/run/c");
  other.disks[0].read_only = false;
  EXPECT_NE(engine_->template_key(other).value_or(*plain), *plain);
}

}  // namespace
}  // namespace kiln::engine::qemu

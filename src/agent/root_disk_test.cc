// The host-testable parts of booting into a root disk: reading kiln.root= and finding a disk by serial in a
// sysfs-shaped directory, and emptying a tree without leaving its filesystem. The switch itself needs a VM
// (tests/vm/vm_disk_test.py).
#include "agent/root_disk.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

TEST(RootDisk, SerialComesFromTheKernelCommandLine) {
  EXPECT_EQ(root_serial_from_cmdline("console=ttyS0 kiln.root=kiln-disk0 quiet\n"), "kiln-disk0");
  EXPECT_EQ(root_serial_from_cmdline("kiln.root=a kiln.root=b"), "b");
  EXPECT_EQ(root_serial_from_cmdline("console=ttyS0 quiet"), std::nullopt);
  EXPECT_EQ(root_serial_from_cmdline("kiln.root= quiet"), std::nullopt);
  EXPECT_EQ(root_serial_from_cmdline("xkiln.root=kiln-disk0"), std::nullopt);
}

class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("kiln-rootdisk-test-");
    ASSERT_TRUE(dir.has_value()) << dir.error().message();
    dir_.emplace(std::move(*dir));
    sys_block_ = dir_->path() + "/sys/block";
    dev_ = dir_->path() + "/dev";
    std::filesystem::create_directories(sys_block_);
    std::filesystem::create_directories(dev_);
  }

  void add_disk(const std::string& name, std::optional<std::string> serial, bool node = true) {
    std::filesystem::create_directories(sys_block_ + "/" + name);
    if (serial) {
      ASSERT_TRUE(write_file_atomic(sys_block_ + "/" + name + "/serial", *serial).has_value());
    }
    if (node) {
      ASSERT_TRUE(write_file_atomic(dev_ + "/" + name, "").has_value());
    }
  }

  std::optional<TempDir> dir_;
  std::string sys_block_;
  std::string dev_;
};

TEST_F(FakeSysfs, FindsTheDiskWithTheSerialWhateverItsName) {
  add_disk("loop0", std::nullopt);
  add_disk("vda", "kiln-disk1\n");
  add_disk("vdb", "kiln-disk0\n");
  auto found = find_block_device(sys_block_, dev_, "kiln-disk0");
  ASSERT_TRUE(found.has_value()) << found.error().message();
  EXPECT_EQ(*found, dev_ + "/vdb");
}

TEST_F(FakeSysfs, MissingDiskOrNodeIsNotFound) {
  add_disk("vda", "kiln-disk1");
  auto missing = find_block_device(sys_block_, dev_, "kiln-disk0");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
  EXPECT_NE(missing.error().message().find("kiln-disk0"), std::string::npos);

  add_disk("vdb", "kiln-disk0", /*node=*/false);
  auto no_node = find_block_device(sys_block_, dev_, "kiln-disk0");
  ASSERT_FALSE(no_node.has_value());
  EXPECT_EQ(no_node.error().category(), ErrorCategory::kNotFound);
}

TEST(RootDisk, DeletingContentsKeepsToTheFilesystemAndDoesNotFollowLinks) {
  auto outside = TempDir::create("kiln-rootdisk-outside-");
  ASSERT_TRUE(outside.has_value());
  ASSERT_TRUE(write_file_atomic(outside->path() + "/keep", "x").has_value());
  auto tree = TempDir::create("kiln-rootdisk-tree-");
  ASSERT_TRUE(tree.has_value());
  std::filesystem::create_directories(tree->path() + "/a/b");
  ASSERT_TRUE(write_file_atomic(tree->path() + "/a/b/file", "x").has_value());
  ASSERT_TRUE(write_file_atomic(tree->path() + "/top", "x").has_value());
  std::filesystem::create_directory_symlink(outside->path(), tree->path() + "/link");

  UniqueFd dir(::open(tree->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  struct stat st {};
  ASSERT_EQ(::fstat(dir.get(), &st), 0);
  // Another device number stands for "another filesystem": nothing may go.
  delete_same_filesystem_contents(dir.get(), st.st_dev + 1);
  EXPECT_TRUE(std::filesystem::exists(tree->path() + "/a/b/file"));

  delete_same_filesystem_contents(dir.get(), st.st_dev);
  EXPECT_TRUE(std::filesystem::is_empty(tree->path()));
  EXPECT_TRUE(std::filesystem::exists(outside->path() + "/keep")) << "followed a symlink out of the tree";
}

}  // namespace
}  // namespace kiln::agent

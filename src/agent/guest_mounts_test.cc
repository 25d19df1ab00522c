// Reading /proc/mounts, choosing what to remount read-only at power-off, splitting mount options and placing
// mount points inside a container's root. Nothing here mounts anything.
#include "agent/guest_mounts.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "common/temp_dir.h"

namespace kiln::agent {
namespace {

constexpr std::string_view kMounts =
    "/dev/vda / ext4 rw,relatime 0 0\n"
    "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
    "devtmpfs /dev devtmpfs rw,nosuid,size=1k,mode=755 0 0\n"
    "kilnshare0 /mnt/hgfs/my\\040share 9p rw,sync,dirsync,relatime,trans=virtio 0 0\n"
    "/dev/vdb /mnt/ro ext4 ro,relatime 0 0\n"
    "/dev/vdc /mnt/data ext4 rw,relatime 0 0\n";

TEST(GuestMounts, ParsesProcMountsAndUndoesEscapes) {
  auto mounts = parse_mounts(kMounts);
  ASSERT_EQ(mounts.size(), 6u);
  EXPECT_EQ(mounts[0], (MountEntry{"/dev/vda", "/", "ext4", "rw,relatime"}));
  EXPECT_EQ(mounts[3].target, "/mnt/hgfs/my share");
  EXPECT_EQ(mounts[3].fstype, "9p");
  EXPECT_TRUE(parse_mounts("").empty());
  EXPECT_TRUE(parse_mounts("garbage\n\n").empty());
}

TEST(GuestMounts, OnlyWritableBlockMountsAreRemountedDeepestFirst) {
  EXPECT_EQ(writable_block_mounts(parse_mounts(kMounts)), (std::vector<std::string>{"/mnt/data", "/"}));
}

TEST(GuestMounts, FlagWordsBecomeFlagsAndTheRestStaysDataInOrder) {
  MountOptions split = split_mount_options("rw,noexec,nosuid,size=65536k,nodev,mode=1777,exec");
  EXPECT_EQ(split.flags, static_cast<unsigned long>(MS_NOSUID | MS_NODEV));  // "exec" undid "noexec"
  EXPECT_EQ(split.data, "size=65536k,mode=1777");
  EXPECT_EQ(split_mount_options("trans=virtio,version=9p2000.L,,cache=none").data,
            "trans=virtio,version=9p2000.L,cache=none");
  EXPECT_EQ(split_mount_options("ro").flags, static_cast<unsigned long>(MS_RDONLY));
  EXPECT_EQ(split_mount_options("").flags, 0UL);
}

TEST(GuestMounts, NormalizingARequestCoversItsRootAndRefusesTheRootItself) {
  MountRequest request{.source = "tmpfs", .target = "/data/", .fstype = "tmpfs", .root = "/kiln/rootfs/"};
  ASSERT_TRUE(normalize_mount_request(request, "MOUNT"));
  EXPECT_EQ(request.target, "/data");
  EXPECT_EQ(request.root, "/kiln/rootfs");
  MountRequest over_root{.source = "tmpfs", .target = "/", .fstype = "tmpfs", .root = "/kiln/rootfs"};
  EXPECT_FALSE(normalize_mount_request(over_root, "MOUNT"));
  MountRequest relative{.source = "tmpfs", .target = "/x", .fstype = "tmpfs", .root = "kiln"};
  EXPECT_FALSE(normalize_mount_request(relative, "MOUNT"));
}

class MountPointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create();
    ASSERT_TRUE(made);
    dir_.emplace(std::move(*made));
    root_ = dir_->path() + "/root";
    outside_ = dir_->path() + "/outside";
    std::filesystem::create_directories(root_ + "/etc");
    std::filesystem::create_directories(outside_);
  }
  // The real path an O_PATH descriptor names.
  static std::string where(const UniqueFd& fd) {
    return std::filesystem::read_symlink(fmt::format("/proc/self/fd/{}", fd.get())).string();
  }
  std::optional<TempDir> dir_;
  std::string root_;
  std::string outside_;
};

TEST_F(MountPointTest, MakesMissingDirectoriesOrAFile) {
  auto point = resolve_mount_point(root_, "/data/deep", true);
  ASSERT_TRUE(point) << point.error().message();
  EXPECT_EQ(where(*point), root_ + "/data/deep");
  auto file = resolve_mount_point(root_, "/etc/app.conf", false);
  ASSERT_TRUE(file) << file.error().message();
  EXPECT_TRUE(std::filesystem::is_regular_file(root_ + "/etc/app.conf"));
}

TEST_F(MountPointTest, SymlinksAndDotDotStayInsideTheRoot) {
  // A hostile image: /data points at the VM's own /, /up climbs out with "..".
  std::filesystem::create_directory_symlink(outside_, root_ + "/data");
  std::filesystem::create_directory_symlink("../../outside", root_ + "/up");
  std::filesystem::create_directory_symlink("../../outside/missing", root_ + "/dangling");
  std::filesystem::create_directories(root_ + "/outside");
  auto point = resolve_mount_point(root_, "/data/x", true);
  ASSERT_TRUE(point) << point.error().message();
  EXPECT_EQ(where(*point), root_ + outside_ + "/x");
  auto up = resolve_mount_point(root_, "/up/y", true);
  ASSERT_TRUE(up) << up.error().message();
  EXPECT_EQ(where(*up), root_ + "/outside/y");
  // A dangling link is followed inside the root too, and what it names made there.
  auto dangling = resolve_mount_point(root_, "/dangling/z", true);
  ASSERT_TRUE(dangling) << dangling.error().message();
  EXPECT_EQ(where(*dangling), root_ + "/outside/missing/z");
  EXPECT_TRUE(std::filesystem::is_empty(outside_));
}

TEST_F(MountPointTest, AMountPointOfTheWrongKindIsRefused) {
  std::ofstream(root_ + "/etc/hosts") << "x";
  EXPECT_FALSE(resolve_mount_point(root_, "/etc/hosts", true));
  EXPECT_FALSE(resolve_mount_point(root_, "/etc", false));
  EXPECT_FALSE(resolve_mount_point(root_, "/etc/hosts/below", true));
}

}  // namespace
}  // namespace kiln::agent

// Reading /proc/mounts and choosing what to remount read-only at power-off. Nothing here mounts anything.
#include "agent/guest_mounts.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace kiln::agent

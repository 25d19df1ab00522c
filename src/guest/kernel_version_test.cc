#include "guest/kernel_version.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "common/temp_dir.h"

namespace kiln::guest {
namespace {

// A file shaped like a bzImage's first sectors: the "HdrS" magic and a version pointer.
std::string write_fake_bzimage(const TempDir& dir, std::string_view version, bool with_magic = true) {
  std::vector<char> bytes(0x1000, 0);
  if (with_magic) std::memcpy(bytes.data() + 0x202, "HdrS", 4);
  unsigned offset = 0x600;
  bytes[0x20E] = static_cast<char>(offset & 0xff);
  bytes[0x20F] = static_cast<char>(offset >> 8);
  std::memcpy(bytes.data() + 0x200 + offset, version.data(), version.size());
  std::string path = dir.path() + "/bzImage";
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(KernelVersionTest, ReadsTheReleaseFromTheSetupHeader) {
  auto dir = TempDir::create("kver-").value();
  auto path = write_fake_bzimage(dir, "6.1.158 (root@kiln) #1 SMP PREEMPT_DYNAMIC");
  auto release = kernel_release(path);
  ASSERT_TRUE(release) << release.error().message();
  EXPECT_EQ(*release, "6.1.158");
}

TEST(KernelVersionTest, RefusesFilesThatAreNotBzImages) {
  auto dir = TempDir::create("kver-").value();
  auto path = write_fake_bzimage(dir, "6.1.158", /*with_magic=*/false);
  auto release = kernel_release(path);
  ASSERT_FALSE(release);
  EXPECT_NE(release.error().message().find("not a Linux bzImage"), std::string::npos);
  EXPECT_FALSE(kernel_release(dir.path() + "/missing"));
}

}  // namespace
}  // namespace kiln::guest

#include "common/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace kiln {
namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

TEST(TempDir, RemovedWithContentsButNotSymlinkTargets) {
  auto outside = TempDir::create("kiln-outside-");
  ASSERT_TRUE(outside);
  ASSERT_TRUE(write_file_atomic(outside->path() + "/keep", "precious"));
  std::string path;
  {
    auto dir = TempDir::create();
    ASSERT_TRUE(dir);
    path = dir->path();
    ASSERT_EQ(::mkdir((path + "/sub").c_str(), 0755), 0);
    ASSERT_TRUE(write_file_atomic(path + "/sub/file", "x"));
    ASSERT_EQ(::symlink(outside->path().c_str(), (path + "/link").c_str()), 0);
  }
  EXPECT_FALSE(exists(path));
  EXPECT_TRUE(exists(outside->path() + "/keep"));
}

TEST(TempDir, ReleaseKeepsTheDirectory) {
  std::string path;
  {
    auto dir = TempDir::create();
    ASSERT_TRUE(dir);
    path = dir->release();
  }
  EXPECT_TRUE(exists(path));
  EXPECT_TRUE(remove_tree(path));
  EXPECT_FALSE(exists(path));
  EXPECT_TRUE(remove_tree(path));  // already gone is fine
}

}  // namespace
}  // namespace kiln

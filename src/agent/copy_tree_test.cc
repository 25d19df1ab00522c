// copy_directory_contents on the host's file system (a volume's copy-up in the guest).
#include "agent/copy_tree.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(CopyTree, CopiesFilesDirectoriesLinksOwnersModesAndTimes) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  std::string from = dir->path() + "/from";
  std::string to = dir->path() + "/to";
  fs::create_directories(from + "/sub/deeper");
  fs::create_directories(to);
  std::ofstream(from + "/sub/file") << "content";
  ASSERT_EQ(::chmod((from + "/sub").c_str(), 0711), 0);
  fs::create_symlink("/etc/passwd", from + "/absolute-link");
  fs::create_hard_link(from + "/sub/file", from + "/hard");
  ASSERT_EQ(::mkfifo((from + "/fifo").c_str(), 0640), 0);
  timespec old_times[2] = {{1000000, 0}, {1000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (from + "/sub/file").c_str(), old_times, 0), 0);
  bool root = ::geteuid() == 0;
  if (root) {
    ASSERT_EQ(::lchown((from + "/sub/file").c_str(), 1234, 5678), 0);
  }
  ASSERT_EQ(::chmod((from + "/sub/file").c_str(), 04750), 0);  // after chown, which clears set-uid

  UniqueFd from_fd(::open(from.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd to_fd(::open(to.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto copied = copy_directory_contents(from_fd.get(), to_fd.get());
  ASSERT_TRUE(copied) << copied.error().message();

  std::ifstream in(to + "/sub/file");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "content");
  struct stat file = stat_of(to + "/sub/file");
  EXPECT_EQ(file.st_mode & 07777, 04750u);  // set-uid kept although the owner changed
  EXPECT_EQ(file.st_mtim.tv_sec, 1000000);
  if (root) {
    EXPECT_EQ(file.st_uid, 1234u);
    EXPECT_EQ(file.st_gid, 5678u);
  }
  EXPECT_EQ(stat_of(to + "/sub").st_mode & 07777, 0711u);
  EXPECT_TRUE(fs::is_directory(to + "/sub/deeper"));
  EXPECT_EQ(fs::read_symlink(to + "/absolute-link"), "/etc/passwd");
  EXPECT_EQ(stat_of(to + "/hard").st_ino, file.st_ino);  // still one file with two names
  EXPECT_TRUE(S_ISFIFO(stat_of(to + "/fifo").st_mode));
  EXPECT_EQ(stat_of(to + "/fifo").st_mode & 07777, 0640u);
}

TEST(CopyTree, AnEntryAlreadyThereFailsTheCopy) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  fs::create_directories(dir->path() + "/from");
  fs::create_directories(dir->path() + "/to");
  std::ofstream(dir->path() + "/from/a") << "new";
  std::ofstream(dir->path() + "/to/a") << "old";
  UniqueFd from_fd(::open((dir->path() + "/from").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd to_fd(::open((dir->path() + "/to").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_FALSE(copy_directory_contents(from_fd.get(), to_fd.get()));
  std::ifstream in(dir->path() + "/to/a");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old");
}

}  // namespace
}  // namespace kiln::agent

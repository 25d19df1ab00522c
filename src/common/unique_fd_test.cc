#include "common/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/temp_dir.h"

namespace kiln {
namespace {

bool fd_is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

TEST(UniqueFd, ClosesOnDestruction) {
  int raw;
  {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    raw = fd.get();
    ASSERT_TRUE(fd_is_open(raw));
  }
  EXPECT_FALSE(fd_is_open(raw));
}

TEST(UniqueFd, MoveTransfersOwnershipExactlyOnce) {
  UniqueFd first(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = first.get();
  UniqueFd second = std::move(first);
  EXPECT_FALSE(first.valid());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move): on purpose
  EXPECT_EQ(second.get(), raw);
  UniqueFd third;
  third = std::move(second);
  EXPECT_EQ(third.get(), raw);
  EXPECT_TRUE(fd_is_open(raw));
  third.reset();
  EXPECT_FALSE(fd_is_open(raw));
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
  int raw;
  {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    raw = fd.release();
  }
  EXPECT_TRUE(fd_is_open(raw));
  ::close(raw);
}

TEST(UniqueFd, ResetClosesPreviousDescriptor) {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  int first = fd.get();
  int second = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  fd.reset(second);
  EXPECT_FALSE(fd_is_open(first));
  EXPECT_EQ(fd.get(), second);
}

TEST(UniqueFd, PipeRoundTripWithFullReadsAndWrites) {
  auto pipe = make_pipe();
  ASSERT_TRUE(pipe);
  EXPECT_TRUE(::fcntl(pipe->read_end.get(), F_GETFD) & FD_CLOEXEC);
  ASSERT_TRUE(write_all(pipe->write_end.get(), std::string_view("hello world")));
  pipe->write_end.reset();
  auto text = read_to_end(pipe->read_end.get());
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "hello world");
}

TEST(UniqueFd, ReadExactReportsEarlyEof) {
  auto pipe = make_pipe();
  ASSERT_TRUE(pipe);
  ASSERT_TRUE(write_all(pipe->write_end.get(), std::string_view("abc")));
  pipe->write_end.reset();
  char buffer[4];
  auto result = read_exact(pipe->read_end.get(), buffer);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kUnavailable);
}

TEST(UniqueFd, ReadToEndEnforcesLimit) {
  auto pipe = make_pipe();
  ASSERT_TRUE(pipe);
  ASSERT_TRUE(write_all(pipe->write_end.get(), std::string(100, 'x')));
  pipe->write_end.reset();
  EXPECT_FALSE(read_to_end(pipe->read_end.get(), 10));
}

TEST(UniqueFd, AtomicWriteReplacesWholeFile) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  std::string path = dir->path() + "/state.json";
  ASSERT_TRUE(write_file_atomic(path, "first"));
  ASSERT_TRUE(write_file_atomic(path, "second"));
  auto text = read_file(path);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "second");
  auto missing = read_file(dir->path() + "/nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
}

}  // namespace
}  // namespace kiln

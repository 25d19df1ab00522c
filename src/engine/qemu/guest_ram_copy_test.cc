#include "engine/qemu/guest_ram_copy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/temp_dir.h"

namespace kiln::engine::qemu {
namespace {

constexpr size_t kPage = 4096;
constexpr uint64_t kRamBytes = uint64_t{8} << 20;

// A memfd named as QEMU 7.2 names a memory-backend-memfd's, of kRamBytes, with `text` written at each offset.
UniqueFd make_ram(const std::vector<std::pair<off_t, std::string>>& writes) {
  UniqueFd fd(::memfd_create("memory-backend-memfd", MFD_CLOEXEC));
  EXPECT_TRUE(fd);
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(kRamBytes)), 0);
  for (const auto& [offset, text] : writes)
    EXPECT_EQ(::pwrite(fd.get(), text.data(), text.size(), offset), static_cast<ssize_t>(text.size()));
  return fd;
}

std::string read_at(const std::string& path, off_t offset, size_t size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string out(size, '?');
  EXPECT_EQ(::pread(fd.get(), out.data(), size, offset), static_cast<ssize_t>(size));
  return out;
}

TEST(GuestRamCopy, CopiesDataAndLeavesHolesAndZeroPagesOut) {
  auto dir = TempDir::create("kiln-ramcopy-");
  ASSERT_TRUE(dir);
  off_t far = static_cast<off_t>(kRamBytes - kPage);
  UniqueFd ram = make_ram({{0, "first page"},
                           {static_cast<off_t>(3 * kPage + 100), "middle"},
                           {static_cast<off_t>(5 * kPage), std::string(kPage, '\0')},  // allocated, zeros
                           {far, "last page"}});
  std::string path = dir->path() + "/memory";
  auto stats = copy_ram_sparse(ram.get(), path);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->bytes, kRamBytes);
  EXPECT_EQ(stats->data_bytes, 3 * kPage);  // the zero page was read but not written
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kRamBytes);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 16 * kPage);  // sparse
  EXPECT_EQ(read_at(path, 0, 10), "first page");
  EXPECT_EQ(read_at(path, static_cast<off_t>(3 * kPage + 100), 6), "middle");
  EXPECT_EQ(read_at(path, far, 9), "last page");
  EXPECT_EQ(read_at(path, static_cast<off_t>(5 * kPage), 4), std::string(4, '\0'));
}

TEST(GuestRamCopy, RefusesAnExistingFile) {
  auto dir = TempDir::create("kiln-ramcopy-");
  ASSERT_TRUE(dir);
  UniqueFd ram = make_ram({});
  std::string path = dir->path() + "/memory";
  ASSERT_TRUE(copy_ram_sparse(ram.get(), path));
  EXPECT_FALSE(copy_ram_sparse(ram.get(), path));
}

TEST(GuestRamCopy, FindsTheRamMemfdOfAProcessBySize) {
  UniqueFd ram = make_ram({});
  UniqueFd other(::memfd_create("something-else", MFD_CLOEXEC));
  auto found = open_guest_ram_memfd(::getpid(), kRamBytes);
  ASSERT_TRUE(found) << found.error().message();
  struct stat a {
  }, b{};
  ASSERT_EQ(::fstat(found->get(), &a), 0);
  ASSERT_EQ(::fstat(ram.get(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  // A process without one (a fork's RAM is a file): refused, saying why.
  auto none = open_guest_ram_memfd(::getpid(), kRamBytes * 2);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_NE(none.error().message().find("fork"), std::string::npos);
}

}  // namespace
}  // namespace kiln::engine::qemu

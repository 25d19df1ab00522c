#include "agent/guest_identity.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/guest_mounts.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

TEST(GuestIdentity, MachineIdIsWrittenWholeAndReplaced) {
  auto root = TempDir::create();
  ASSERT_TRUE(root.has_value());
  std::string etc = root->path() + "/etc";  // an initramfs may have no /etc yet
  ASSERT_TRUE(write_machine_id("0123456789abcdef0123456789abcdef", etc).has_value());
  EXPECT_EQ(*read_file(etc + "/machine-id"), "0123456789abcdef0123456789abcdef\n");
  auto replaced = write_machine_id("fedcba9876543210fedcba9876543210", etc);
  ASSERT_TRUE(replaced.has_value()) << replaced.error().message();
  EXPECT_EQ(*read_file(etc + "/machine-id"), "fedcba9876543210fedcba9876543210\n");
  struct stat info {};
  ASSERT_EQ(::stat((etc + "/machine-id").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0444u);
  auto bad = write_machine_id("not-an-id", etc);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(*read_file(etc + "/machine-id"), "fedcba9876543210fedcba9876543210\n");
}

TEST(GuestIdentity, ShortSeedIsRefusedBeforeTheKernelIsAsked) {
  auto refused = reseed_kernel_rng(std::string(31, 's'), "/nonexistent/urandom");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kInvalidArgument) << refused.error().message();
}

TEST(GuestIdentity, ReseedsTheRealKernelRng) {
  // Adding credited entropy and reseeding changes no state a test machine relies on; it needs CAP_SYS_ADMIN.
  auto reseeded = reseed_kernel_rng(std::string(32, '\x5a'), "/dev/urandom");
  if (!reseeded && reseeded.error().category() == ErrorCategory::kPermissionDenied) {
    GTEST_SKIP() << "needs CAP_SYS_ADMIN: " << reseeded.error().message();
  }
  ASSERT_TRUE(reseeded.has_value()) << reseeded.error().message();
}

TEST(GuestIdentity, ReseedOnSomethingElseThanARandomDeviceFails) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir.has_value());
  std::string file = dir->path() + "/urandom";
  ASSERT_TRUE(write_file_atomic(file, "").has_value());
  auto failed = reseed_kernel_rng(std::string(32, 'x'), file);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("RNDADDENTROPY"), std::string::npos) << failed.error().message();
}

TEST(GuestIdentity, FlushingSomethingElseThanABlockDeviceFails) {
  auto failed = flush_block_device("/dev/null");
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("BLKFLSBUF on /dev/null"), std::string::npos)
      << failed.error().message();
  EXPECT_FALSE(flush_block_device("/nonexistent/vdb"));
}

}  // namespace
}  // namespace kiln::agent

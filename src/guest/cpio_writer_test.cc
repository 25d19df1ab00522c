#include "guest/cpio_writer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/child_process.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::guest {
namespace {

// The archive must be what cpio(1) and the kernel read: extract it with GNU cpio and look at the result.
TEST(CpioWriter, ArchiveExtractsWithGnuCpio) {
  CpioWriter writer;
  writer.add_directory("etc");
  writer.add_file("etc/motd", "hello\n", 0640);
  writer.add_file("/init", std::string(5000, 'x'), 0755);  // leading slash is dropped
  writer.add_symlink("etc/link", "motd");
  writer.add_file("empty", "");
  std::string archive = writer.finish();
  EXPECT_EQ(archive.size() % 512, 0u);

  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  auto output = run_command({"sh", "-c", "cd '" + dir->path() + "' && cpio -id --quiet"}, archive);
  ASSERT_TRUE(output);
  ASSERT_TRUE(output->status.success()) << output->stderr_text;

  EXPECT_EQ(*read_file(dir->path() + "/etc/motd"), "hello\n");
  EXPECT_EQ(read_file(dir->path() + "/init")->size(), 5000u);
  EXPECT_EQ(*read_file(dir->path() + "/empty"), "");
  struct stat st {};
  ASSERT_EQ(::stat((dir->path() + "/etc/motd").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ASSERT_EQ(::stat((dir->path() + "/init").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  char target[64] = {};
  ASSERT_GT(::readlink((dir->path() + "/etc/link").c_str(), target, sizeof target - 1), 0);
  EXPECT_STREQ(target, "motd");
}

TEST(CpioWriter, DeviceNodesCarryTheirNumbers) {
  CpioWriter writer;
  writer.add_directory("dev");
  writer.add_char_device("dev/console", 5, 1);
  auto listing = run_command({"cpio", "-tv", "--quiet"}, writer.finish());
  ASSERT_TRUE(listing);
  ASSERT_TRUE(listing->status.success()) << listing->stderr_text;
  EXPECT_NE(listing->stdout_text.find("crw-------"), std::string::npos) << listing->stdout_text;
  EXPECT_NE(listing->stdout_text.find("5,"), std::string::npos) << listing->stdout_text;
  EXPECT_NE(listing->stdout_text.find("dev/console"), std::string::npos);
}

}  // namespace
}  // namespace kiln::guest

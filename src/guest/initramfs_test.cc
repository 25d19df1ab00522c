#include "guest/initramfs.h"

#include <gtest/gtest.h>

#include "common/child_process.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::guest {
namespace {

TEST(Initramfs, AgentIsInitAndBusyboxAppletsAreLinked) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  std::string agent = dir->path() + "/agent";
  ASSERT_TRUE(write_file_atomic(agent, "#!/bin/sh\necho fake agent\n", 0755));
  auto applets = list_busybox_applets("/bin/busybox");
  ASSERT_TRUE(applets) << applets.error().message();
  auto archive = build_initramfs({agent, "/bin/busybox", *applets});
  ASSERT_TRUE(archive) << archive.error().message();

  auto listing = run_command({"cpio", "-tv", "--quiet"}, *archive);
  ASSERT_TRUE(listing);
  const std::string& text = listing->stdout_text;
  EXPECT_NE(text.find(" init\n"), std::string::npos);
  EXPECT_NE(text.find("bin/sh -> /bin/busybox"), std::string::npos);
  EXPECT_NE(text.find("dev/console"), std::string::npos);
  EXPECT_NE(text.find("bin/busybox\n"), std::string::npos);
}

TEST(Initramfs, MissingAgentIsAClearError) {
  auto archive = build_initramfs({"/nonexistent/kiln-agent", "/bin/busybox", {}});
  ASSERT_FALSE(archive);
  EXPECT_EQ(archive.error().category(), ErrorCategory::kNotFound);
  EXPECT_NE(archive.error().message().find("read kiln-agent"), std::string::npos);
}

}  // namespace
}  // namespace kiln::guest

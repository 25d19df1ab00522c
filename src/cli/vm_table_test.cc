#include "cli/vm_table.h"

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

TEST(VmTable, SizesReadLikeTheFlags) {
  EXPECT_EQ(format_mib(512), "512M");
  EXPECT_EQ(format_mib(1024), "1G");
  EXPECT_EQ(format_mib(1536), "1.5G");
}

TEST(VmTable, TimeAgo) {
  std::time_t created = 1700000000;  // 2023-11-14T22:13:20Z
  EXPECT_EQ(time_ago("2023-11-14T22:13:20Z", created + 5), "Less than a minute ago");
  EXPECT_EQ(time_ago("2023-11-14T22:13:20Z", created + 60), "1 minute ago");
  EXPECT_EQ(time_ago("2023-11-14T22:13:20Z", created + 7200), "2 hours ago");
  EXPECT_EQ(time_ago("2023-11-14T22:13:20Z", created + 3 * 86400), "3 days ago");
  EXPECT_EQ(time_ago("yesterday", created), "yesterday");
  EXPECT_EQ(time_ago(created, created + 30 * 3600), "30 hours ago");
  EXPECT_EQ(time_ago(created, created + 20 * 86400), "2 weeks ago");
  EXPECT_EQ(time_ago(created, created + 100 * 86400), "3 months ago");
  EXPECT_EQ(time_ago(created, created + 1060 * 86400), "2 years ago");
}

TEST(VmTable, ColumnsAlignOnTheWidestCell) {
  Json vms = Json::array({{{"name", "a-much-longer-name"},
                           {"id", "0123456789abcdef0123"},
                           {"state", "running"},
                           {"addresses", {"10.88.0.5", "172.30.0.2"}},
                           {"cpus", 2},
                           {"memory_mib", 512},
                           {"disk_mib", 1024},
                           {"created_at", "2023-11-14T22:13:20Z"}},
                          {{"name", "b"},
                           {"id", "fedcba9876543210"},
                           {"state", "stopped"},
                           {"addresses", Json::array()},
                           {"cpus", 1},
                           {"memory_mib", 2048},
                           {"disk_mib", 4096},
                           {"created_at", "2023-11-14T22:13:20Z"}}});
  std::string table = format_vm_table(vms, 1700000000 + 120);
  EXPECT_EQ(
      table,
      "NAME                 ID             STATE     IP          CPUS   MEMORY   DISK   CREATED\n"
      "a-much-longer-name   0123456789ab   running   10.88.0.5   2      512M     1G     2 minutes ago\n"
      "b                    fedcba987654   stopped               1      2G       4G     2 minutes ago\n");
}

}  // namespace
}  // namespace kiln::cli

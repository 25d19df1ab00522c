#include "daemon/containers/container_names.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace kiln::daemon::containers {
namespace {

TEST(ContainerNamesTest, DockersRuleWithItsMessage) {
  EXPECT_EQ(validate_container_name("web").value(), "web");
  EXPECT_EQ(validate_container_name("/web-1.a_b").value(), "web-1.a_b");
  EXPECT_EQ(validate_container_name("9lives").value(), "9lives");
  for (std::string_view bad : {"", "/", "a", "-web", "_web", ".web", "web!", "we b", "/a/b", "wéb"}) {
    auto result = validate_container_name(bad);
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_EQ(result.error().message(),
              fmt::format("Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", bad));
  }
}

TEST(ContainerNamesTest, GeneratedNamesAreAdjectiveSurnameAndValid) {
  std::mt19937_64 random(42);
  const std::regex shape("^[a-z]+_[a-z]+$");
  const std::regex retried("^[a-z]+_[a-z]+[0-9]$");
  std::set<std::string> seen;
  for (int i = 0; i < 500; ++i) {
    std::string name = generate_container_name(random);
    EXPECT_TRUE(std::regex_match(name, shape)) << name;
    EXPECT_NE(name, "boring_wozniak");
    EXPECT_TRUE(validate_container_name(name)) << name;
    seen.insert(name);
    EXPECT_TRUE(std::regex_match(generate_container_name(random, 1), retried));
  }
  EXPECT_GT(seen.size(), 400u) << "names repeat far too often";
  // 2304 pairs: 20000 draws would give boring_wozniak about 9 times if it were not excluded.
  for (int i = 0; i < 20000; ++i) ASSERT_NE(generate_container_name(random), "boring_wozniak");
}

TEST(ContainerNamesTest, UniqueNamesRetryUntilFree) {
  std::mt19937_64 random(7);
  std::set<std::string> taken;
  for (int i = 0; i < 200; ++i) {
    auto name = unique_container_name(random, [&taken](const std::string& n) { return taken.contains(n); });
    ASSERT_TRUE(name) << name.error().message();
    EXPECT_TRUE(taken.insert(*name).second) << *name << " handed out twice";
  }
  auto impossible = unique_container_name(random, [](const std::string&) { return true; });
  ASSERT_FALSE(impossible);
  EXPECT_EQ(impossible.error().category(), ErrorCategory::kInternal);
}

}  // namespace
}  // namespace kiln::daemon::containers

#include "agent/protocol/linux_capabilities.h"

#include <gtest/gtest.h>

namespace kiln::agent {
namespace {

uint64_t mask(const std::vector<std::string>& names) {
  uint64_t bits = 0;
  for (const auto& name : names) bits |= uint64_t{1} << capability_number(name).value();
  return bits;
}

TEST(CapabilityNames, AcceptDockersSpellings) {
  EXPECT_EQ(capability_number("CAP_CHOWN"), 0);
  EXPECT_EQ(capability_number("net_admin"), 12);
  EXPECT_EQ(capability_number("SYS_ADMIN"), 21);
  EXPECT_EQ(capability_number("CAP_CHECKPOINT_RESTORE"), 40);
  EXPECT_EQ(capability_number("CAP_FLY"), std::nullopt);
  EXPECT_EQ(capability_name(12), "CAP_NET_ADMIN");
}

TEST(ContainerCapabilities, DefaultsAreDockersBoundingSet) {
  // CapBnd of a `docker run busybox` process under dockerd 20.10 + runc.
  EXPECT_EQ(mask(docker_default_capabilities()), 0xa80425fbU);
  EXPECT_EQ(mask(container_capabilities({}, {}).value()), 0xa80425fbU);
}

TEST(ContainerCapabilities, AddAndDropAsDockerdDoes) {
  auto set = container_capabilities({"NET_ADMIN"}, {"chown", "CAP_KILL"}).value();
  EXPECT_EQ(mask(set), (0xa80425fbU | (1U << 12)) & ~1U & ~(1U << 5));
  EXPECT_EQ(mask(container_capabilities({}, {"ALL"}).value()), 0U);
  EXPECT_EQ(mask(container_capabilities({"SYS_TIME"}, {"ALL"}).value()), uint64_t{1} << 25);
  EXPECT_EQ(container_capabilities({"ALL"}, {}).value().size(), static_cast<size_t>(kLinuxCapabilityCount));
}

TEST(ContainerCapabilities, UnknownNamesInDockerdsWords) {
  auto bad = container_capabilities({"FLY"}, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "invalid CapAdd: unknown capability: \"CAP_FLY\"");
  bad = container_capabilities({}, {"cap_swim"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "invalid CapDrop: unknown capability: \"CAP_SWIM\"");
}

}  // namespace
}  // namespace kiln::agent

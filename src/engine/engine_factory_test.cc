#include "engine/engine_factory.h"

#include <gtest/gtest.h>

namespace kiln::engine {
namespace {

TEST(EngineFactory, UnknownEngineNameIsAClearError) {
  auto engine = make_engine({.name = "vmware", .qemu_binary = "/bin/true"});
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_NE(engine.error().message().find("unknown engine \"vmware\""), std::string::npos)
      << engine.error().message();
}

TEST(EngineFactory, AutoAndQemuPickQemu) {
  for (const char* name : {"auto", "qemu"}) {
    // QemuEngine only checks that the binary exists; any executable stands in for QEMU here.
    auto engine =
        make_engine({.name = name, .accelerator = AcceleratorChoice::kTcg, .qemu_binary = "/bin/true"});
    ASSERT_TRUE(engine) << engine.error().message();
    EXPECT_EQ((*engine)->name(), "qemu");
    EXPECT_EQ((*engine)->accelerator(), Accelerator::kTcg);
  }
}

TEST(EngineFactory, MissingQemuBinaryIsNotFound) {
  auto engine = make_engine({.name = "qemu", .qemu_binary = "/nonexistent/qemu-system-x86_64"});
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.error().category(), ErrorCategory::kNotFound);
}

TEST(EngineFactory, AcceleratorChoice) {
  EXPECT_EQ(parse_accelerator_choice("auto").value(), AcceleratorChoice::kAuto);
  EXPECT_EQ(parse_accelerator_choice("kvm").value(), AcceleratorChoice::kKvm);
  EXPECT_EQ(parse_accelerator_choice("tcg").value(), AcceleratorChoice::kTcg);
  EXPECT_EQ(parse_accelerator_choice("hvf").error().category(), ErrorCategory::kInvalidArgument);

  EXPECT_EQ(resolve_accelerator(AcceleratorChoice::kAuto, Accelerator::kKvm).value(), Accelerator::kKvm);
  EXPECT_EQ(resolve_accelerator(AcceleratorChoice::kAuto, Accelerator::kTcg).value(), Accelerator::kTcg);
  EXPECT_EQ(resolve_accelerator(AcceleratorChoice::kTcg, Accelerator::kKvm).value(), Accelerator::kTcg);
  EXPECT_EQ(resolve_accelerator(AcceleratorChoice::kKvm, Accelerator::kKvm).value(), Accelerator::kKvm);
  auto no_kvm = resolve_accelerator(AcceleratorChoice::kKvm, Accelerator::kTcg);
  ASSERT_FALSE(no_kvm);
  EXPECT_EQ(no_kvm.error().category(), ErrorCategory::kFailedPrecondition);
}

}  // namespace
}  // namespace kiln::engine

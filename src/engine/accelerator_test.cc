#include "engine/accelerator.h"

#include <gtest/gtest.h>

namespace kiln::engine {
namespace {

TEST(Accelerator, KvmOnlyWithHardwareVirtualizationAndAUsableDevice) {
  std::string vmx = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
  std::string svm = "flags\t\t: fpu svm lm\n";
  std::string none = "flags\t\t: fpu vme sse hypervisor\n";
  EXPECT_EQ(choose_accelerator(vmx, true), Accelerator::kKvm);
  EXPECT_EQ(choose_accelerator(svm, true), Accelerator::kKvm);
  // A software KVM (PVM) exposes /dev/kvm without vmx/svm: useless for Linux guests, so TCG.
  EXPECT_EQ(choose_accelerator(none, true), Accelerator::kTcg);
  EXPECT_EQ(choose_accelerator(vmx, false), Accelerator::kTcg);
  // "svm" as part of another word is not the flag.
  EXPECT_EQ(choose_accelerator("flags\t\t: fpu svmx_like\n", true), Accelerator::kTcg);
}

TEST(Accelerator, ParsesCpuFrequency) {
  EXPECT_EQ(parse_cpu_khz("model name\t: x\ncpu MHz\t\t: 2096.037\ncache size\t: 512 KB\n"), 2096037u);
  EXPECT_EQ(parse_cpu_khz("cpu MHz\t\t: 2600\n"), 2600000u);
  EXPECT_EQ(parse_cpu_khz("nothing here\n"), 0u);
}

}  // namespace
}  // namespace kiln::engine

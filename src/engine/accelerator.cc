#include "engine/accelerator.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <regex>
#include <sstream>

#include "common/unique_fd.h"

namespace kiln::engine {

namespace {
constexpr unsigned long kKvmGetApiVersion = 0xAE00;  // _IO(KVMIO, 0x00)
constexpr int kKvmApiVersion = 12;

bool kvm_device_usable() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) return false;
  return ::ioctl(kvm.get(), kKvmGetApiVersion, 0) == kKvmApiVersion;
}
}  // namespace

Accelerator choose_accelerator(const std::string& cpuinfo, bool kvm_usable) {
  static const std::regex kFlagsWithVirtualization(R"(^flags\s*:.*\b(vmx|svm)\b)", std::regex::multiline);
  bool hardware = std::regex_search(cpuinfo, kFlagsWithVirtualization);
  return hardware && kvm_usable ? Accelerator::kKvm : Accelerator::kTcg;
}

Accelerator detect_accelerator() {
  auto cpuinfo = read_file("/proc/cpuinfo");
  return choose_accelerator(cpuinfo ? *cpuinfo : std::string{}, kvm_device_usable());
}

unsigned long parse_cpu_khz(const std::string& cpuinfo) {
  static const std::regex kCpuMhz(R"(^cpu MHz\s*:\s*([0-9]+(\.[0-9]+)?))", std::regex::multiline);
  std::smatch match;
  if (!std::regex_search(cpuinfo, match, kCpuMhz)) return 0;
  return static_cast<unsigned long>(std::llround(std::stod(match[1].str()) * 1000.0));
}

unsigned long host_tsc_khz() {
  auto cpuinfo = read_file("/proc/cpuinfo");
  return cpuinfo ? parse_cpu_khz(*cpuinfo) : 0;
}

}  // namespace kiln::engine

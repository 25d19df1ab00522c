#include "engine/engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::engine {

std::string_view to_string(Accelerator accelerator) {
  return accelerator == Accelerator::kKvm ? "kvm" : "tcg";
}

std::string_view to_string(VmRunState state) {
  switch (state) {
    case VmRunState::kRunning:
      return "running";
    case VmRunState::kPaused:
      return "paused";
    case VmRunState::kShutdown:
      return "shutdown";
    case VmRunState::kExited:
      return "exited";
  }
  return "unknown";
}

std::string VmInstance::console_tail(size_t max_bytes) const {
  UniqueFd fd(::open(console_log_path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return {};
  off_t start = st.st_size > static_cast<off_t>(max_bytes) ? st.st_size - static_cast<off_t>(max_bytes) : 0;
  if (::lseek(fd.get(), start, SEEK_SET) < 0) return {};
  auto text = read_to_end(fd.get(), max_bytes);
  return text ? *text : std::string{};
}

}  // namespace kiln::engine

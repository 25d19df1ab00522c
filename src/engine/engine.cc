#include "engine/engine.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::engine {

std::string_view to_string(Accelerator accelerator) {
  return accelerator == Accelerator::kKvm ? "kvm" : "tcg";
}

std::string moved_path(const std::string& path, const std::string& from, const std::string& to) {
  if (path == from) return to;
  if (path.starts_with(from + "/")) return to + path.substr(from.size());
  return path;
}

std::string nic_device_mac(size_t index) {
  // QEMU's locally administered 52:54:00 prefix, then "kl" and the slot.
  return fmt::format("52:54:00:6b:6c:{:02x}", index & 0xff);
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

Result<void> Engine::check_forkable(const VmTemplate& from, const VmSpec& spec) {
  std::vector<std::string> differences;
  if (from.cpus() != spec.cpus) differences.push_back(fmt::format("cpus {} vs {}", from.cpus(), spec.cpus));
  if (from.memory_mib() != spec.memory_mib) {
    differences.push_back(fmt::format("memory {} MiB vs {} MiB", from.memory_mib(), spec.memory_mib));
  }
  std::vector<bool> read_only;
  for (const auto& disk : spec.disks) read_only.push_back(disk.read_only);
  if (read_only != from.disk_read_only()) {
    auto layout = [](const std::vector<bool>& flags) {
      std::vector<std::string_view> words;
      for (bool flag : flags) words.push_back(flag ? "ro" : "rw");
      return fmt::format("[{}]", fmt::join(words, ", "));
    };
    differences.push_back(
        fmt::format("disk slots {} vs {}", layout(from.disk_read_only()), layout(read_only)));
  }
  // The guest read each slot's size once, when the template booted: a larger disk would be cut short.
  for (size_t i = 0; i < spec.disks.size() && i < from.disk_capacity().size(); ++i) {
    struct stat st {};
    uint64_t capacity = from.disk_capacity()[i];
    const std::string& path = spec.disks[i].path;
    if (capacity == 0 || path.empty() || ::stat(path.c_str(), &st) != 0) continue;
    if (static_cast<uint64_t>(st.st_size) > capacity) {
      differences.push_back(
          fmt::format("disk {} ({}) is {} bytes, larger than the slot's {}", i, path, st.st_size, capacity));
    }
  }
  if (from.nics() != spec.nics.size())
    differences.push_back(fmt::format("NICs {} vs {}", from.nics(), spec.nics.size()));
  if (from.shares() != spec.shares.size())
    differences.push_back(fmt::format("shares {} vs {}", from.shares(), spec.shares.size()));
  if (differences.empty()) return ok();
  return Error::failed_precondition(fmt::format("VM {} does not fit template {} (template vs VM: {})",
                                                spec.name, from.dir(), fmt::join(differences, "; ")));
}

}  // namespace kiln::engine

#include "agent/protocol/linux_capabilities.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace kiln::agent {
namespace {

// linux/capability.h, in order: index = capability number.
constexpr std::array<std::string_view, kLinuxCapabilityCount> kCapabilityNames = {
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
};

constexpr std::string_view kDockerDefaults[] = {
    "CHOWN",  "DAC_OVERRIDE", "FSETID",  "FOWNER",           "MKNOD",      "NET_RAW", "SETGID",
    "SETUID", "SETFCAP",      "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",    "AUDIT_WRITE"};

std::string upper(std::string_view name) {
  std::string out;
  for (char c : name) out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

}  // namespace

std::optional<int> capability_number(std::string_view name) {
  std::string upper_name = upper(name);
  std::string_view bare = upper_name;
  if (bare.starts_with("CAP_")) bare.remove_prefix(4);
  for (size_t i = 0; i < kCapabilityNames.size(); ++i) {
    if (kCapabilityNames[i] == bare) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::string capability_name(int number) {
  if (number < 0 || number >= kLinuxCapabilityCount) return fmt::format("CAP_{}", number);
  return fmt::format("CAP_{}", kCapabilityNames[static_cast<size_t>(number)]);
}

std::vector<std::string> docker_default_capabilities() {
  std::vector<std::string> out;
  for (auto name : kDockerDefaults) out.push_back(fmt::format("CAP_{}", name));
  return out;
}

Result<std::vector<std::string>> container_capabilities(const std::vector<std::string>& cap_add,
                                                        const std::vector<std::string>& cap_drop) {
  uint64_t set = 0;
  for (auto name : kDockerDefaults) set |= uint64_t{1} << *capability_number(name);
  auto apply = [&](const std::vector<std::string>& names, std::string_view field, bool add) -> Result<void> {
    for (const auto& name : names) {
      if (upper(name) == "ALL" || upper(name) == "CAP_ALL") {
        set = add ? (uint64_t{1} << kLinuxCapabilityCount) - 1 : 0;
        continue;
      }
      auto number = capability_number(name);
      if (!number) {
        std::string shown = upper(name).starts_with("CAP_") ? upper(name) : "CAP_" + upper(name);
        return Error::invalid_argument(fmt::format("invalid {}: unknown capability: \"{}\"", field, shown));
      }
      if (add) {
        set |= uint64_t{1} << *number;
      } else {
        set &= ~(uint64_t{1} << *number);
      }
    }
    return ok();
  };
  // Drops first, then adds: an explicit --cap-add wins over a --cap-drop of the same, as in dockerd.
  KILN_TRY(apply(cap_drop, "CapDrop", false));
  KILN_TRY(apply(cap_add, "CapAdd", true));
  std::vector<std::string> out;
  for (int i = 0; i < kLinuxCapabilityCount; ++i) {
    if ((set >> i) & 1) out.push_back(capability_name(i));
  }
  return out;
}

}  // namespace kiln::agent

#include "guest/guest_kit.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "common/sha256.h"
#include "common/unique_fd.h"
#include "guest/initramfs.h"

namespace kiln::guest {
namespace {

// Bump when the initramfs layout changes, so cached archives are rebuilt.
constexpr std::string_view kInitramfsFormat = "kiln-initramfs-v1";

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read-only
  return value ? value : "";
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<std::string> find_kernel(const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    if (!is_file(explicit_path)) return Error::not_found(fmt::format("kernel {} not found", explicit_path));
    return explicit_path;
  }
  if (auto from_env = env_or_empty("KILN_KERNEL"); !from_env.empty()) {
    if (!is_file(from_env))
      return Error::not_found(fmt::format("kernel {} (from KILN_KERNEL) not found", from_env));
    return from_env;
  }
  std::string built = executable_dir() + "/../guest/kernel";
  if (is_file(built)) return std::filesystem::canonical(built).string();
  return Error::not_found(
      "no guest kernel: build Kiln's with scripts/build-guest-kernel.sh (the build links it to "
      "<build>/guest/kernel) or pass --kernel PATH");
}

Result<std::string> find_agent(const std::string& explicit_path) {
  std::string path = explicit_path;
  if (path.empty()) path = env_or_empty("KILN_AGENT");
  if (path.empty()) path = executable_dir() + "/kiln-agent";
  if (!is_file(path)) return Error::not_found(fmt::format("kiln-agent not found at {}", path));
  return path;
}

Result<std::string> cached_initramfs(const std::string& agent, const std::string& busybox,
                                     const std::string& cache) {
  std::string agent_hash = KILN_TRY(sha256_file_hex(agent));
  std::string busybox_hash = KILN_TRY(sha256_file_hex(busybox));
  std::string key = sha256_hex(fmt::format("{}\n{}\n{}\n", kInitramfsFormat, agent_hash, busybox_hash));
  std::string dir = cache + "/initramfs";
  std::string path = fmt::format("{}/{}.cpio", dir, key.substr(0, 32));
  if (is_file(path)) return path;

  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return Error::from_errno(fmt::format("create {}", dir), error.value());
  auto applets = KILN_TRY(list_busybox_applets(busybox));
  std::string archive = KILN_TRY(build_initramfs({agent, busybox, applets}));
  KILN_TRY_CONTEXT(write_file_atomic(path, archive), "write initramfs");
  return path;
}

}  // namespace

std::string default_cache_dir() {
  if (auto dir = env_or_empty("KILN_CACHE_DIR"); !dir.empty()) return dir;
  if (::geteuid() == 0) return "/var/cache/kiln";
  if (auto xdg = env_or_empty("XDG_CACHE_HOME"); !xdg.empty()) return xdg + "/kiln";
  return env_or_empty("HOME") + "/.cache/kiln";
}

std::string executable_dir() {
  std::error_code error;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? "." : exe.parent_path().string();
}

Result<GuestKit> resolve_guest_kit(const GuestKitOptions& options) {
  GuestKit kit;
  kit.kernel = KILN_TRY(find_kernel(options.kernel));
  if (!options.initramfs.empty()) {
    if (!is_file(options.initramfs))
      return Error::not_found(fmt::format("initramfs {} not found", options.initramfs));
    kit.initramfs = options.initramfs;
    return kit;
  }
  std::string agent = KILN_TRY(find_agent(options.agent_binary));
  if (!is_file(options.busybox_binary)) {
    return Error::not_found(
        fmt::format("busybox not found at {} (install busybox-static)", options.busybox_binary));
  }
  std::string cache = options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
  kit.initramfs = KILN_TRY_CONTEXT(cached_initramfs(agent, options.busybox_binary, cache), "guest initramfs");
  return kit;
}

}  // namespace kiln::guest

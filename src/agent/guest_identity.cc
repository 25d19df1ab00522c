#include "agent/guest_identity.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <ctime>

#include "agent/guest_mounts.h"
#include "agent/guest_network.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

// struct rand_pool_info with its flexible buffer sized for the largest seed CLONE_INIT accepts.
struct EntropyInput {
  int entropy_count;  // bits credited
  int buf_size;       // bytes in buf
  uint8_t buf[kCloneSeedMaxBytes];
};
static_assert(offsetof(EntropyInput, buf) == offsetof(rand_pool_info, buf));

}  // namespace

Result<void> set_wall_clock(int64_t unix_nanos, std::string_view what) {
  timespec now{.tv_sec = static_cast<time_t>(unix_nanos / 1'000'000'000),
               .tv_nsec = static_cast<long>(unix_nanos % 1'000'000'000)};
  if (::clock_settime(CLOCK_REALTIME, &now) != 0)
    return Error::last_os_error(fmt::format("{}: clock_settime", what));
  return ok();
}

Result<void> set_guest_hostname(std::string_view hostname, std::string_view what) {
  if (::sethostname(hostname.data(), hostname.size()) != 0)
    return Error::last_os_error(fmt::format("{}: sethostname", what));
  return ok();
}

Result<void> reseed_kernel_rng(std::string_view seed, const std::string& random_device) {
  KILN_TRY(validate_clone_seed(seed));
  UniqueFd device(::open(random_device.c_str(), O_WRONLY | O_CLOEXEC));
  if (!device) return Error::last_os_error(fmt::format("open {}", random_device));
  EntropyInput input{};
  input.entropy_count = static_cast<int>(seed.size() * 8);
  input.buf_size = static_cast<int>(seed.size());
  std::memcpy(input.buf, seed.data(), seed.size());
  int added = ::ioctl(device.get(), RNDADDENTROPY, &input);
  int saved_errno = errno;
  ::explicit_bzero(&input, sizeof input);
  if (added != 0) return Error::from_errno(fmt::format("RNDADDENTROPY on {}", random_device), saved_errno);
  // Adding entropy alone leaves the CRNG keyed as the template left it until its next scheduled reseed
  // (up to a minute away); this rekeys it now, and every CPU's CRNG follows on its next use.
  if (::ioctl(device.get(), RNDRESEEDCRNG) != 0)
    return Error::last_os_error(fmt::format("RNDRESEEDCRNG on {}", random_device));
  return ok();
}

Result<void> write_machine_id(std::string_view machine_id, const std::string& etc_dir) {
  KILN_TRY(validate_machine_id(machine_id));
  if (::mkdir(etc_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return Error::last_os_error(fmt::format("mkdir {}", etc_dir));
  return write_file_atomic(etc_dir + "/machine-id", fmt::format("{}\n", machine_id), 0444);
}

Result<CloneInitReply> apply_clone_init(const CloneInitRequest& request) {
  CloneInitReply reply;
  auto started = std::chrono::steady_clock::now();
  // Each step's time, for the host's log: under TCG a clone's first run of each kernel path is slow.
  auto done = [&](std::string step) {
    auto now = std::chrono::steady_clock::now();
    reply.steps.push_back(
        {.step = std::move(step), .ms = std::chrono::duration<double, std::milli>(now - started).count()});
    started = now;
  };
  KILN_TRY(set_wall_clock(request.unix_nanos, "CLONE_INIT"));
  done("clock");
  if (!request.hostname.empty()) {
    KILN_TRY(set_guest_hostname(request.hostname, "CLONE_INIT"));
    done("hostname");
  }
  if (request.reseed) {
    KILN_TRY_CONTEXT(reseed_kernel_rng(request.seed, "/dev/urandom"), "CLONE_INIT");
    done("rng");
  }
  if (!request.machine_id.empty()) {
    KILN_TRY_CONTEXT(write_machine_id(request.machine_id, "/etc"), "CLONE_INIT");
    done("machine_id");
  }
  if (!request.network.empty()) {
    KILN_TRY_CONTEXT(apply_network_config(request.network), "CLONE_INIT");
    done("network");
  }
  for (size_t i = 0; i < request.mounts.size(); ++i) {
    const MountRequest& mount = request.mounts[i];
    // The template may hold cached blocks of the placeholder disk that sat in this slot before the fork.
    KILN_TRY_CONTEXT(mount_in_guest(mount, MountFlush::kFlushBlockDevice),
                     fmt::format("CLONE_INIT mount {} ({} on {})", i, mount.source, mount.target));
    done(fmt::format("mount{}:{}", i, mount.fstype));
  }
  log::info("clone identity applied", {{"hostname", request.hostname},
                                       {"machine_id", request.machine_id},
                                       {"reseeded", request.reseed ? "yes" : "no"},
                                       {"mounts", request.mounts.size()},
                                       {"steps_ms", format_clone_init_steps(reply)}});
  return reply;
}

}  // namespace kiln::agent

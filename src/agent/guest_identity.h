// The guest's identity as the host sets it after boot or after a fork: wall clock (SET_CLOCK), hostname
// (SET_HOSTNAME), and CLONE_INIT, which also reseeds the kernel RNG and writes the machine id. These act on
// the whole guest, so only PID 1 of a guest calls them; the pieces that take a path can be pointed elsewhere
// by tests. Agent thread only.
#pragma once

#include <string>
#include <string_view>

#include "agent/protocol/messages.h"
#include "common/error.h"

namespace kiln::agent {

// clock_settime(CLOCK_REALTIME). `what` names the request in the error.
Result<void> set_wall_clock(int64_t unix_nanos, std::string_view what);
// sethostname(2) of a validate_hostname()d name.
Result<void> set_guest_hostname(std::string_view hostname, std::string_view what);

// Mixes `seed` into the kernel's input pool, crediting 8 bits per byte (ioctl RNDADDENTROPY on
// `random_device`, normally /dev/urandom), then makes the CRNG reseed from it at once (RNDRESEEDCRNG), so
// the next getrandom() no longer follows the state the guest had before. Needs CAP_SYS_ADMIN.
Result<void> reseed_kernel_rng(std::string_view seed, const std::string& random_device);

// Writes "<machine_id>\n" to `etc_dir`/machine-id atomically (readers see the old id or the new one),
// creating `etc_dir` if needed. `machine_id` must pass validate_machine_id().
Result<void> write_machine_id(std::string_view machine_id, const std::string& etc_dir);

// Does all of `request` in the documented order (README, CLONE_INIT); mount targets must be normalized.
// Stops at the first failure, whose message says which step (and which mount) failed. On success, how long
// each step took (the reply's steps_ms).
Result<CloneInitReply> apply_clone_init(const CloneInitRequest& request);

}  // namespace kiln::agent

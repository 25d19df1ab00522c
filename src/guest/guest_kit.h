// The guest kit: the kernel and initramfs every Kiln VM boots. Finds the kernel (an explicit path, or the
// one the build linked next to the binaries) and builds the initramfs once per content hash into Kiln's
// cache dir. Safe to call from several processes at once (atomic renames).
#pragma once

#include <string>

#include "common/error.h"

namespace kiln::guest {

struct GuestKit {
  std::string kernel;
  std::string initramfs;
};

struct GuestKitOptions {
  std::string kernel;        // explicit kernel (--kernel); empty: $KILN_KERNEL, then <bin>/../guest/kernel
  std::string initramfs;     // explicit initramfs (--initrd); empty: build/cache Kiln's own
  std::string agent_binary;  // empty: $KILN_AGENT, then <bin>/kiln-agent
  std::string busybox_binary = "/bin/busybox";
  std::string cache_dir;  // empty: default_cache_dir()
};

// $KILN_CACHE_DIR, else /var/cache/kiln for root, else $XDG_CACHE_HOME/kiln or ~/.cache/kiln.
std::string default_cache_dir();
// Directory holding the running executable.
std::string executable_dir();

Result<GuestKit> resolve_guest_kit(const GuestKitOptions& options);

}  // namespace kiln::guest

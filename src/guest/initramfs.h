// The guest initramfs: kiln-agent as /init plus a busybox userland (until images arrive). Workload-neutral
// by design: nothing about what will run is in it, so one booted VM can serve any workload.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace kiln::guest {

struct InitramfsContents {
  std::string agent_binary;                // static kiln-agent, becomes /init
  std::string busybox_binary;              // static busybox, /bin/busybox
  std::vector<std::string> busybox_links;  // applet paths relative to / ("bin/sh", "usr/bin/wc", ...)
};

// Asks the busybox binary for its applets (`busybox --list-full`).
Result<std::vector<std::string>> list_busybox_applets(const std::string& busybox_binary);

// The archive bytes (uncompressed newc cpio).
Result<std::string> build_initramfs(const InitramfsContents& contents);

}  // namespace kiln::guest

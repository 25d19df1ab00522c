#include "guest/initramfs.h"

#include <set>
#include <sstream>

#include "common/child_process.h"
#include "common/unique_fd.h"
#include "guest/cpio_writer.h"

namespace kiln::guest {

Result<std::vector<std::string>> list_busybox_applets(const std::string& busybox_binary) {
  std::string listing =
      KILN_TRY_CONTEXT(run_command_checked({busybox_binary, "--list-full"}), "list busybox applets");
  std::vector<std::string> applets;
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) applets.push_back(line);
  }
  if (applets.empty()) return Error::invalid_argument(fmt::format("{} lists no applets", busybox_binary));
  return applets;
}

Result<std::string> build_initramfs(const InitramfsContents& contents) {
  std::string agent = KILN_TRY_CONTEXT(read_file(contents.agent_binary), "read kiln-agent");
  std::string busybox = KILN_TRY_CONTEXT(read_file(contents.busybox_binary), "read busybox");

  CpioWriter cpio;
  for (const char* dir : {"bin", "dev", "etc", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr",
                          "usr/bin", "usr/sbin", "var", "var/tmp"}) {
    cpio.add_directory(dir,
                       std::string_view(dir) == "tmp" || std::string_view(dir) == "var/tmp" ? 01777 : 0755);
  }
  // The kernel opens /dev/console for init's stdio before anything mounts devtmpfs.
  cpio.add_char_device("dev/console", 5, 1);
  cpio.add_file("init", agent, 0755);
  cpio.add_file("bin/busybox", busybox, 0755);
  std::set<std::string> seen = {"bin/busybox"};
  for (const auto& applet : contents.busybox_links) {
    std::string path = applet.front() == '/' ? applet.substr(1) : applet;
    if (path.find("..") != std::string::npos || !seen.insert(path).second) continue;
    cpio.add_symlink(path, "/bin/busybox");
  }
  cpio.add_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  cpio.add_file("etc/group", "root:x:0:\nnogroup:x:65534:\n");
  cpio.add_file("etc/hostname", "kiln\n");
  return cpio.finish();
}

}  // namespace kiln::guest

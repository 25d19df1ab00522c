#include "daemon/root_disk.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/child_process.h"
#include "common/errno_text.h"
#include "common/unique_fd.h"
#include "guest/initramfs.h"
#include "image/layer_apply.h"

namespace kiln::daemon {
namespace {

namespace fs = std::filesystem;

Result<void> make_ext4(const std::string& image_path, uint64_t size_mib, const std::string& tree) {
  // -d copies the tree in (owners, modes, links, xattrs); sparse by construction. No reserved blocks: a VM
  // disk has no root-only emergency use for them.
  auto output = KILN_TRY(
      run_command({"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L",
                   "kiln-root", "-d", tree, image_path, fmt::format("{}M", size_mib)}));
  if (!output.status.success()) {
    (void)::unlink(image_path.c_str());
    std::string reason = output.stderr_text;
    while (!reason.empty() && reason.back() == '\n') reason.pop_back();
    if (reason.find("Could not allocate") != std::string::npos ||
        reason.find("No space") != std::string::npos || reason.find("too small") != std::string::npos) {
      return Error::invalid_argument(
          fmt::format("the root filesystem does not fit in a {} MiB disk; ask for a larger disk", size_mib));
    }
    return Error::internal(fmt::format("mkfs.ext4 failed: {}", reason));
  }
  return ok();
}

Result<void> write_text(const std::string& path, std::string_view text, mode_t mode = 0644) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return Error::last_os_error(fmt::format("create {}", path));
  return write_all(fd.get(), text);
}

// Kiln's minimal userland: busybox and its applets, the directories a Linux userland expects, and the few
// files programs look for.
Result<void> populate_busybox_tree(const std::string& tree, const std::string& busybox) {
  for (const char* dir : {"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev",
                          "run", "var/tmp", "var/log", "mnt", "home"}) {
    fs::create_directories(fs::path(tree) / dir);
  }
  ::chmod((tree + "/tmp").c_str(), 01777);
  ::chmod((tree + "/var/tmp").c_str(), 01777);
  std::error_code error;
  fs::copy_file(busybox, tree + "/bin/busybox", error);
  if (error) return Error::internal(fmt::format("copy {}: {}", busybox, error.message()));
  ::chmod((tree + "/bin/busybox").c_str(), 0755);
  auto applets = KILN_TRY(guest::list_busybox_applets(busybox));
  for (const auto& applet : applets) {
    std::string relative = applet.front() == '/' ? applet.substr(1) : applet;
    if (relative == "bin/busybox") continue;
    fs::path link = fs::path(tree) / relative;
    fs::create_directories(link.parent_path());
    if (::symlink("/bin/busybox", link.c_str()) != 0 && errno != EEXIST) {
      return Error::last_os_error(fmt::format("symlink {}", link.string()));
    }
  }
  KILN_TRY(write_text(tree + "/etc/passwd",
                      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"));
  KILN_TRY(write_text(tree + "/etc/group", "root:x:0:\nnogroup:x:65534:\n"));
  KILN_TRY(write_text(tree + "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"));
  KILN_TRY(write_text(tree + "/etc/os-release", "NAME=\"Kiln busybox\"\nID=kiln\n"));
  return ok();
}

Result<void> unpack_tarball(const std::string& tarball, const std::string& tree) {
  UniqueFd input(::open(tarball.c_str(), O_RDONLY | O_CLOEXEC));
  if (!input)
    return Error::invalid_argument(fmt::format("rootfs tarball {}: {}", tarball, errno_text(errno)));
  fs::create_directories(tree);
  UniqueFd root(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return Error::last_os_error(fmt::format("open {}", tree));
  auto stats = image::apply_layer(root.get(), input.get(), image::UnpackOptions{});
  if (!stats) {
    return Error::invalid_argument(fmt::format("rootfs tarball {}: {}", tarball, stats.error().message()));
  }
  return ok();
}

Result<void> extract_erofs(const std::string& erofs, const std::string& tree) {
  KILN_TRY_CONTEXT(run_command_checked({"fsck.erofs", "--extract=" + tree, "--preserve", erofs}),
                   "extract image root filesystem");
  return ok();
}

Result<void> copy_disk(const std::string& from, const std::string& to, uint64_t size_mib) {
  KILN_TRY_CONTEXT(run_command_checked({"cp", "--sparse=always", "--reflink=auto", from, to}),
                   "copy template disk");
  struct stat st {};
  if (::stat(to.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) < (size_mib << 20)) {
    // A larger disk than the template's: grow the file and the filesystem.
    if (::truncate(to.c_str(), static_cast<off_t>(size_mib << 20)) != 0)
      return Error::last_os_error("grow disk");
    KILN_TRY_CONTEXT(run_command_checked({"e2fsck", "-fy", to}), "check copied disk");
    KILN_TRY_CONTEXT(run_command_checked({"resize2fs", to}), "grow copied disk");
  }
  return ok();
}

}  // namespace

Result<void> build_root_disk(const std::string& image_path, uint64_t size_mib, const RootSource& source,
                             const RootDiskInputs& inputs) {
  std::string tree = inputs.scratch_dir + "/tree";
  switch (source.kind) {
    case RootSource::Kind::kDefault:
      fs::create_directories(tree);
      KILN_TRY(populate_busybox_tree(tree, inputs.busybox_binary));
      return make_ext4(image_path, size_mib, tree);
    case RootSource::Kind::kDirectory: {
      struct stat st {};
      if (::stat(source.value.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return Error::invalid_argument(
            fmt::format("root filesystem directory {} does not exist", source.value));
      }
      return make_ext4(image_path, size_mib, source.value);
    }
    case RootSource::Kind::kTarball:
      KILN_TRY(unpack_tarball(source.value, tree));
      return make_ext4(image_path, size_mib, tree);
    case RootSource::Kind::kImage: {
      if (!inputs.image_rootfs) return Error::unsupported("images are not available in this kilnd");
      std::string erofs = KILN_TRY(inputs.image_rootfs(source.value));
      KILN_TRY(extract_erofs(erofs, tree));
      return make_ext4(image_path, size_mib, tree);
    }
    case RootSource::Kind::kVm: {
      if (!inputs.vm_root_disk) return Error::unsupported("cloning VMs is not available in this kilnd");
      std::string template_disk = KILN_TRY(inputs.vm_root_disk(source.value));
      return copy_disk(template_disk, image_path, size_mib);
    }
    case RootSource::Kind::kContainer:
      break;  // a container's VM has no root disk: VmManager gives it the image and a writable layer
  }
  return Error::internal("unknown root filesystem source");
}

}  // namespace kiln::daemon

#include "agent/host_channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "common/log.h"

namespace kiln::agent {

Result<std::optional<UniqueFd>> GivenFdChannel::connect() {
  if (!fd_) return Error::unavailable("the host channel closed");
  KILN_TRY(set_nonblocking(fd_.get()));
  return std::optional<UniqueFd>(std::move(fd_));
}

Result<std::optional<std::string>> find_virtio_port(const std::string& sysfs_dir,
                                                    std::string_view port_name) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(sysfs_dir.c_str()), ::closedir);
  if (!dir) {
    if (errno == ENOENT) return std::optional<std::string>{};  // no virtio-serial device (yet)
    return Error::last_os_error(fmt::format("open {}", sysfs_dir));
  }
  while (dirent* entry = ::readdir(dir.get())) {  // NOLINT(concurrency-mt-unsafe): one DIR, one thread
    std::string device = entry->d_name;
    if (device == "." || device == "..") continue;
    auto name = read_file(sysfs_dir + "/" + device + "/name", 4096);
    if (!name) continue;  // a port without a name, or one going away
    std::string_view text = *name;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    if (text == port_name) return std::optional<std::string>(device);
  }
  return std::optional<std::string>{};
}

void VirtioPortChannel::note(std::string state) {
  if (state == state_) return;
  log::info(state);
  state_ = std::move(state);
}

Result<std::optional<UniqueFd>> VirtioPortChannel::connect() {
  if (!port_) {
    auto device = KILN_TRY(find_virtio_port(sysfs_dir_, kAgentPortName));
    if (!device) {
      note(fmt::format("waiting for a virtio port named {} in {}", kAgentPortName, sysfs_dir_));
      return std::optional<UniqueFd>{};
    }
    std::string path = dev_dir_ + "/" + *device;
    port_.reset(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!port_) {
      if (errno == ENOENT) {  // devtmpfs has not created the node yet
        note(fmt::format("waiting for {} to appear", path));
        return std::optional<UniqueFd>{};
      }
      return Error::last_os_error(fmt::format("open {}", path));
    }
    note(fmt::format("opened {}", path));
  }
  // virtio_console reports POLLHUP while no host is connected to the port's chardev.
  pollfd port{port_.get(), POLLIN | POLLOUT, 0};
  if (::poll(&port, 1, 0) < 0) return Error::last_os_error("poll agent port");
  if (port.revents & POLLHUP) {
    // Leave buffered bytes alone: they are the next host's (a session that ended at end of file read all of
    // the last host's). Data and the open notice travel on different virtqueues, so the HELLO of a host that
    // just connected can be buffered, and wake the agent, before the guest learns of the open.
    note("waiting for the host to connect to the agent port");
    return std::optional<UniqueFd>{};
  }
  note("host connected to the agent port");
  return std::optional<UniqueFd>(KILN_TRY(port_.duplicate()));
}

}  // namespace kiln::agent

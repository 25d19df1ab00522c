// HostChannel: where kiln-agent finds the host. As PID 1 that is the virtio-console port named "kiln.agent"
// (QEMU: -device virtserialport,name=kiln.agent,chardev=...), which survives the host disconnecting and
// reconnecting; in tests it is an fd given on the command line (--serve-fd), good for one connection.
// Agent thread only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::agent {

inline constexpr std::string_view kAgentPortName = "kiln.agent";

class HostChannel {
 public:
  virtual ~HostChannel() = default;
  // A connected, non-blocking fd; nullopt while the host is not there (ask again later); an error when it
  // never will be.
  virtual Result<std::optional<UniqueFd>> connect() = 0;
  // Whether a lost connection can come back (then the agent waits for it) or means the end.
  virtual bool reconnects() const = 0;
  // While connect() says "not yet": an fd whose waitqueue is woken when that may change (watch it
  // edge-triggered and call connect() again), or -1 when there is none and the agent must poll.
  virtual int wake_fd() const { return -1; }
};

// --serve-fd N: the fd is the connection; once it closes the agent is done.
class GivenFdChannel : public HostChannel {
 public:
  explicit GivenFdChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<std::optional<UniqueFd>> connect() override;
  bool reconnects() const override { return false; }

 private:
  UniqueFd fd_;
};

// The virtio-console port. The guest cannot tell the host to reconnect; it sees the host's side as POLLHUP
// (closed) or not. POLLHUP is a level that lasts while the host is away, so the agent watches the port
// edge-triggered (wake_fd): virtio_console wakes the port's waitqueue when the host opens its side
// (VIRTIO_CONSOLE_PORT_OPEN), which is the moment to connect(). Until the port exists it must poll.
class VirtioPortChannel : public HostChannel {
 public:
  // `sysfs_dir` is /sys/class/virtio-ports and `dev_dir` /dev, except in tests.
  VirtioPortChannel(std::string sysfs_dir, std::string dev_dir)
      : sysfs_dir_(std::move(sysfs_dir)), dev_dir_(std::move(dev_dir)) {}
  Result<std::optional<UniqueFd>> connect() override;
  bool reconnects() const override { return true; }
  // The port once opened (it stays open across hosts); -1 before.
  int wake_fd() const override { return port_.get(); }

 private:
  // Logs `state` when it differs from the last one, so waiting is visible on the console but not noisy.
  void note(std::string state);

  std::string sysfs_dir_;
  std::string dev_dir_;
  std::string state_;
  UniqueFd port_;  // kept open across host reconnects; each session gets a duplicate
};

// The device name ("vport0p1") of the virtio port whose sysfs `name` is `port_name`, or nullopt.
Result<std::optional<std::string>> find_virtio_port(const std::string& sysfs_dir, std::string_view port_name);

}  // namespace kiln::agent

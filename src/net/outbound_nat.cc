#include "net/outbound_nat.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "common/child_process.h"
#include "common/unique_fd.h"
#include "net/links.h"
#include "net/namespace_thread.h"

namespace kiln::net {
namespace {

constexpr int kReadyFdInChild = 3;
constexpr int kReadyTimeoutMs = 10'000;

bool outbound_link_exists(NamespaceThread& inside) {
  bool found = false;
  (void)inside.run([&]() -> Result<void> {
    found = links::exists(std::string(kOutboundLink));
    return ok();
  });
  return found;
}

}  // namespace

Result<std::string> outbound_gateway(const std::string& outbound_cidr) {
  auto slash = outbound_cidr.find('/');
  in_addr network{};
  if (slash == std::string::npos ||
      ::inet_pton(AF_INET, outbound_cidr.substr(0, slash).c_str(), &network) != 1)
    return Error::invalid_argument(fmt::format("invalid outbound subnet {:?}", outbound_cidr));
  network.s_addr = htonl(ntohl(network.s_addr) + 2);
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &network, text, sizeof(text));
  return std::string(text);
}

Result<void> ensure_outbound_nat(NamespaceThread& inside, const FabricConfig& config) {
  if (outbound_link_exists(inside)) return ok();  // an earlier kilnd's NAT still runs
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Error::last_os_error("pipe for slirp4netns");
  UniqueFd ready_read(pipe_fds[0]);
  UniqueFd ready_write(pipe_fds[1]);
  std::error_code error;
  std::filesystem::create_directories(config.state_dir, error);
  std::string log_path = config.state_dir + "/slirp4netns.log";
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return Error::last_os_error("open " + log_path);

  std::vector<std::string> argv = {"slirp4netns",
                                   "--configure",
                                   "--mtu=65520",
                                   "--cidr=" + config.outbound_cidr,
                                   fmt::format("--ready-fd={}", kReadyFdInChild),
                                   "--netns-type=path"};
  if (!config.host_loopback) argv.emplace_back("--disable-host-loopback");
  argv.push_back(config.namespace_path);
  argv.emplace_back(kOutboundLink);
  // Detached: its own session, not killed with kilnd, reparented to init if kilnd exits.
  auto child = KILN_TRY_CONTEXT(ChildProcess::spawn({.argv = argv,
                                                     .stdin_mode = Stdio::kNull,
                                                     .stdout_fd = log.get(),
                                                     .stderr_fd = log.get(),
                                                     .pass_fds = {{ready_write.get(), kReadyFdInChild}},
                                                     .new_session = true}),
                                "start slirp4netns (apt-get install slirp4netns)");
  ready_write.reset();
  pollfd ready{.fd = ready_read.get(), .events = POLLIN, .revents = 0};
  int polled = ::poll(&ready, 1, kReadyTimeoutMs);
  char byte = 0;
  bool configured = polled == 1 && ::read(ready_read.get(), &byte, 1) == 1;
  if (!configured) {
    (void)::kill(child.pid(), SIGKILL);
    (void)child.wait();
    return Error::unavailable(
        fmt::format("slirp4netns did not configure Kiln's network namespace (see {})", log_path));
  }
  child.detach();  // it runs on; kilnd finds it again by its tap
  return ok();
}

}  // namespace kiln::net

// kiln_port_proxy_tool: one forward of Kiln's PortProxy (src/net/port_proxy.h) as a process, for
// bench/net/net_bench.py --proxies, which sets it against docker-proxy on the same loopback target.
// Usage: kiln_port_proxy_tool tcp|udp HOST_IP TARGET_IP TARGET_PORT
// Prints the port it listens on (a free one), then forwards until its stdin closes.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "net/port_proxy.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    (void)std::fprintf(stderr, "usage: %s tcp|udp HOST_IP TARGET_IP TARGET_PORT\n", argv[0]);
    return 2;
  }
  kiln::net::PortProxy proxy([](int domain, int type) -> kiln::Result<kiln::UniqueFd> {
    kiln::UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, 0));
    if (!fd) return kiln::Error::last_os_error("socket");
    return fd;
  });
  auto listener =
      proxy.listen(kiln::net::ProxySpec{.protocol = argv[1],
                                        .host_ip = argv[2],
                                        .target_ip = argv[3],
                                        .target_port = static_cast<uint16_t>(std::atoi(argv[4]))});
  if (!listener) {
    (void)std::fprintf(stderr, "%s\n", listener.error().message().c_str());
    return 1;
  }
  std::printf("%u\n", (*listener)->port());
  (void)std::fflush(stdout);
  char buffer[64];
  while (::read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }
  return 0;
}

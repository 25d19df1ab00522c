// kilnd's command line, validated into plain options. Parsed once on the main thread.
#pragma once

#include <string>
#include <vector>

namespace kiln::daemon {

struct DaemonOptions {
  std::string root = "/var/lib/kiln";
  std::string run_dir = "/run/kiln";
  std::vector<std::string> hosts;  // -H; empty: unix://<run_dir>/kiln.sock
  // --docker-host; empty: unix://<run_dir>/docker.sock (the Docker Engine API).
  std::vector<std::string> docker_hosts;
  // -G: the group that owns the unix sockets (dockerd's -G); empty: "docker" when that group exists.
  std::string socket_group;
  int appcatalyst_port = 0;  // 0: off; AppCatalyst's own default was 8080
  bool detach = false;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string kernel;  // empty: Kiln's guest kernel
  std::string qemu;    // empty: $KILN_QEMU, then qemu-system-x86_64 on PATH
  std::vector<std::string> insecure_registries;
  // "fork": container VMs start as copy-on-write clones of a booted template; "cold": every VM boots.
  std::string boot = "fork";
  // Idle clones kept forked per VM shape (daemon/warm_pool.h); 0: no warm pool.
  unsigned warm_pool = 2;
  unsigned tcg_code_cache_mib = 0;   // --tcg-code-cache: engine_factory.h
  int max_concurrent_downloads = 3;  // layers one pull downloads at once (dockerd's option of the same name)
  // Guest networking (docs/networking.md): "on" (Kiln's network namespace; needs root and slirp4netns) or
  // "none" (VMs get no NIC).
  std::string network = "on";
  // Guests reach the host's loopback through the outbound NAT's gateway (`host-gateway`).
  bool host_loopback = true;
};

}  // namespace kiln::daemon

// kilnd: the Kiln daemon. Parses its command line, optionally detaches (returning once the API is up, or
// with the startup error), and runs the daemon.
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>

#include "common/errno_text.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "daemon/daemon.h"
#include "kiln/version.h"

namespace {

using kiln::daemon::DaemonOptions;

// --detach: the child runs the daemon in its own session; the parent waits on a pipe for "ready" (exit 0)
// or the startup error (printed, exit 1), so scripts know the API is up when kilnd returns.
int detach_and_run(const DaemonOptions& options) {
  auto pipe = kiln::make_pipe();
  if (!pipe) {
    fmt::print(stderr, "kilnd: {}\n", pipe.error().message());
    return 1;
  }
  kiln::UniqueFd read_end = std::move(pipe->read_end);
  kiln::UniqueFd write_end = std::move(pipe->write_end);
  pid_t child = ::fork();
  if (child < 0) {
    fmt::print(stderr, "kilnd: fork: {}\n", kiln::errno_text(errno));
    return 1;
  }
  if (child > 0) {
    write_end.reset();
    std::string report = kiln::read_to_end(read_end.get()).value_or("");
    if (report == "ok") return 0;
    fmt::print(stderr, "kilnd: {}\n", report.empty() ? "the daemon exited during startup" : report);
    return 1;
  }
  read_end.reset();
  ::setsid();
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ::dup2(null, STDIN_FILENO);
  std::error_code ignored;
  std::filesystem::create_directories(options.run_dir, ignored);
  std::string log_path = options.run_dir + "/kilnd.log";
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  ::dup2(log >= 0 ? log : null, STDOUT_FILENO);
  ::dup2(log >= 0 ? log : null, STDERR_FILENO);
  int reporter = write_end.get();
  return kiln::daemon::run_daemon(options, [&](const kiln::Error* error) {
    if (reporter < 0) return;
    (void)kiln::write_all(reporter, error ? error->message() : "ok");
    write_end.reset();
    reporter = -1;
  });
}

}  // namespace

int main(int argc, char** argv) {
  (void)std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"kilnd: the Kiln daemon (Kiln VM API, Docker Engine API, AppCatalyst API)", "kilnd"};
  app.set_version_flag("--version", fmt::format("kilnd version {}", kiln::kVersion));
  DaemonOptions options;
  app.add_option("--root", options.root, "State directory (VM disks, state database, images)")
      ->capture_default_str();
  app.add_option("--run-dir", options.run_dir, "Sockets, pid file and VM runtime files")
      ->capture_default_str();
  app.add_option(
      "-H,--host", options.hosts,
      "Listen on unix:///path or tcp://127.0.0.1:PORT (repeatable; default unix://<run-dir>/kiln.sock)");
  app.add_option("--docker-host", options.docker_hosts,
                 "Serve the Docker Engine API on unix:///path or tcp://127.0.0.1:PORT (repeatable; default "
                 "unix://<run-dir>/docker.sock)");
  app.add_option("-G,--group", options.socket_group,
                 "Group owning the unix sockets (default: docker, when that group exists)");
  app.add_option("--appcatalyst-port", options.appcatalyst_port,
                 "Also serve the AppCatalyst REST API on 127.0.0.1:PORT (AppCatalyst used 8080)")
      ->check(CLI::Range(1, 65535));
  app.add_flag("-d,--detach", options.detach, "Run in the background; return once the API is up");
  app.add_option("--log-format", options.log_format, "text or json")->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", options.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_option("--kernel", options.kernel, "Guest kernel (default: Kiln's own)");
  app.add_option("--boot", options.boot,
                 "How container VMs start: fork (a copy-on-write clone of a booted template) or cold (boot "
                 "each one; no memory shared between VMs)")
      ->check(CLI::IsMember({"fork", "cold"}));
  app.add_option("--warm-pool", options.warm_pool,
                 "With --boot=fork: idle clones kept forked ahead of need per VM shape, each handed to one "
                 "container start (0: none; the pool shrinks when host memory runs low)")
      ->check(CLI::Range(0u, 64u))
      ->capture_default_str();
  app.add_option(
         "--tcg-code-cache", options.tcg_code_cache_mib,
         "Under TCG (no hardware virtualization): each VM's translated-code cache in MiB; small saves "
         "memory per idle VM and costs CPU in busy ones (default: QEMU's, up to 1 GiB)")
      ->check(CLI::Range(1u, 1024u));
  app.add_option(
         "--network", options.network,
         "Guest networking: on (networks in Kiln's own network namespace; needs root and slirp4netns) or "
         "none (VMs get no NIC)")
      ->check(CLI::IsMember({"on", "none"}));
  app.add_flag("!--no-host-loopback", options.host_loopback,
               "Guests cannot reach the host's loopback through their gateway (host-gateway)");
  app.add_option("--qemu", options.qemu, "QEMU binary (default: $KILN_QEMU, then qemu-system-x86_64)");
  app.add_option("--insecure-registry", options.insecure_registries,
                 "Registry reached over plain HTTP (repeatable)");
  app.add_option("--max-concurrent-downloads", options.max_concurrent_downloads,
                 "Layers one pull downloads at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);
  } catch (const CLI::ParseError& error) {
    fmt::print(stderr, "kilnd: {} (see --help)\n", error.what());
    return 2;
  }
  kiln::log::set_format(options.log_format == "json" ? kiln::log::Format::kJson : kiln::log::Format::kText);
  static constexpr std::pair<std::string_view, kiln::log::Level> kLevels[] = {
      {"debug", kiln::log::Level::kDebug},
      {"info", kiln::log::Level::kInfo},
      {"warn", kiln::log::Level::kWarn},
      {"error", kiln::log::Level::kError}};
  for (auto [name, level] : kLevels) {
    if (name == options.log_level) kiln::log::set_level(level);
  }
  if (options.detach) return detach_and_run(options);
  return kiln::daemon::run_daemon(options, [](const kiln::Error*) {});
}

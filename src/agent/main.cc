// kiln-agent: PID 1 of every Kiln guest (serves the host over the "kiln.agent" virtio port), or, for tests
// on the host, a protocol server on a given fd (--serve-fd N / --serve-stdio) that touches nothing else.
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/file_builtins.h"
#include "agent/host_channel.h"
#include "agent/pid1.h"
#include "common/log.h"
#include "kiln/version.h"

namespace {

constexpr const char* kUsage =
    "usage: kiln-agent                 (as PID 1 of a Kiln guest)\n"
    "       kiln-agent --serve-fd N    serve the agent protocol on fd N (a connected socket)\n"
    "       kiln-agent --serve-stdio   the same on fd 0\n"
    "       kiln-agent --builtin NAME --root DIR -- ARGS...   a file builtin (how the agent runs them)\n"
    "options: --log-level debug|info|warn|error   --version\n";

struct Options {
  int serve_fd = -1;
};

// Returns nullopt after printing usage or the version; the exit code goes to `exit_code`.
std::optional<Options> parse_options(int argc, char** argv, int& exit_code) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      return i + 1 < argc ? std::string_view(argv[++i]) : std::string_view();
    };
    if (arg == "--serve-fd") {
      std::string_view text = value();
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), options.serve_fd);
      if (error != std::errc() || end != text.data() + text.size() || options.serve_fd < 0) {
        (void)std::fputs(kUsage, stderr);
        exit_code = 2;
        return std::nullopt;
      }
    } else if (arg == "--serve-stdio") {
      options.serve_fd = 0;
    } else if (arg == "--log-level") {
      if (!kiln::log::set_level_by_name(value())) {
        (void)std::fputs(kUsage, stderr);
        exit_code = 2;
        return std::nullopt;
      }
    } else if (arg == "--version") {
      std::printf("kiln-agent %s\n", kiln::kVersion);
      exit_code = 0;
      return std::nullopt;
    } else {
      (void)std::fputs(kUsage, stderr);
      exit_code = arg == "--help" || arg == "-h" ? 0 : 2;
      return std::nullopt;
    }
  }
  return options;
}

std::unique_ptr<kiln::agent::HostChannel> make_channel(const Options& options) {
  if (options.serve_fd >= 0) {
    return std::make_unique<kiln::agent::GivenFdChannel>(kiln::UniqueFd(options.serve_fd));
  }
  return std::make_unique<kiln::agent::VirtioPortChannel>("/sys/class/virtio-ports", "/dev");
}

// `--builtin NAME --root DIR -- ARGS...`: the agent re-executed to run one of its file builtins.
int run_builtin(int argc, char** argv) {
  if (argc < 6 || std::string_view(argv[3]) != "--root" || std::string_view(argv[5]) != "--") {
    (void)std::fputs(kUsage, stderr);
    return 2;
  }
  std::vector<std::string> args(argv + 6, argv + argc);
  int code = kiln::agent::run_file_builtin(argv[2], argv[4], args);
  // _exit: the builtin wrote everything with write(2), and once chrooted no exit-time work may look for
  // files of the real root (LeakSanitizer in the sanitized build reads /proc at exit).
  ::_exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "--builtin") return run_builtin(argc, argv);
  int exit_code = 0;
  auto options = parse_options(argc, argv, exit_code);
  if (!options) return exit_code;
  bool pid1 = ::getpid() == 1;
  if (!pid1 && options->serve_fd < 0) {
    (void)std::fputs("kiln-agent: not PID 1; use --serve-fd N to serve on a given fd\n", stderr);
    return 2;
  }
  // A vanished peer must be an EPIPE value, not a fatal signal (children get SIG_DFL back: spawn.cc).
  (void)::signal(SIGPIPE, SIG_IGN);
  kiln::agent::SessionConfig config{.guest_system = pid1};
  if (pid1) config.root = kiln::agent::prepare_system();
  kiln::log::info("kiln-agent starting", {{"version", kiln::kVersion}, {"pid1", pid1 ? "yes" : "no"}});

  for (;;) {
    auto outcome = [&]() -> kiln::Result<kiln::agent::AgentOutcome> {
      auto agent = KILN_TRY(kiln::agent::Agent::create(make_channel(*options), config));
      return agent->run();
    }();
    if (!pid1) {
      if (!outcome) kiln::log::error("kiln-agent failed", {{"error", outcome.error().message()}});
      return outcome ? 0 : 1;
    }
    if (outcome && outcome->kind == kiln::agent::AgentOutcome::Kind::kShutdown) {
      kiln::agent::power_off(outcome->reboot);
    }
    // PID 1 must not exit: log, pause, and serve again.
    kiln::log::error("agent loop ended; restarting it",
                     {{"error", outcome ? std::string("host gone") : outcome.error().message()}});
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

// kiln_bench_boot: how long a cold Kiln VM takes to become useful, and what it costs. Over N runs it times
// (1) engine launch to the agent's HELLO reply, in process; (2) `kiln vm run -- true` end to end, as a user
// sees it, forked from a template (its default) and booted (`--boot=cold`); and reads (3) QEMU's peak RSS
// after one trivial process ran. A peer, `qemu-system-x86_64 -version`, is timed in the same runs as the
// floor of starting the QEMU binary at all. Prints figures only: no timing is asserted (docs/benchmarks.md
// records them). Single-threaded.
#include <sys/types.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/client/agent_connection.h"
#include "agent/client/attach.h"
#include "common/child_process.h"
#include "common/error.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"
#include "engine/accelerator.h"
#include "engine/qemu/qemu_engine.h"
#include "engine/qemu/qemu_vm.h"
#include "guest/guest_kit.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The same VM `kiln vm run` boots by default, so measurements (1) and (2) differ only by the CLI's work.
constexpr unsigned kCpus = 1;
constexpr uint64_t kMemoryMib = 512;
// Generous, as in `kiln vm run`: a loaded TCG host can take far longer than the usual seconds.
constexpr auto kAgentTimeout = 180s;

struct Options {
  int runs = 10;
  std::string kiln;  // the kiln binary for (2)
  std::string qemu;  // the QEMU binary: $KILN_QEMU, else qemu-system-x86_64 on PATH
};

struct ColdBootSample {
  double seconds_to_hello = 0;
  double peak_rss_mib = 0;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void print_usage() {
  (void)std::fprintf(
      stderr,
      "usage: kiln_bench_boot [--runs N] [--kiln PATH]\n"
      "  --runs N     timed runs of each measurement (default 10; one untimed warm-up precedes them)\n"
      "  --kiln PATH  the kiln binary for `kiln vm run -- true` (default: the kiln beside this binary)\n"
      "Environment: KILN_KERNEL, KILN_QEMU as for kiln.\n");
}

Result<Options> parse_options(int argc, char** argv) {
  Options options;
  options.kiln = guest::executable_dir() + "/kiln";
  const char* qemu = std::getenv("KILN_QEMU");  // NOLINT(concurrency-mt-unsafe): read-only, one thread
  options.qemu = qemu && *qemu ? qemu : "qemu-system-x86_64";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--runs" && has_value) {
      std::string_view text = argv[++i];
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), options.runs);
      if (error != std::errc() || end != text.data() + text.size() || options.runs < 1) {
        return Error::invalid_argument(fmt::format("--runs {}: expected a positive integer", text));
      }
    } else if (arg == "--kiln" && has_value) {
      options.kiln = argv[++i];
    } else {
      return Error::invalid_argument(fmt::format("unknown or incomplete argument {}", arg));
    }
  }
  return options;
}

// VmHWM (peak resident set) of `pid` in MiB, from /proc/<pid>/status.
Result<double> peak_rss_mib(pid_t pid) {
  std::string status = KILN_TRY(read_file(fmt::format("/proc/{}/status", pid), 1 << 16));
  constexpr std::string_view kKey = "VmHWM:";
  size_t at = status.find(kKey);
  if (at == std::string::npos) return Error::not_found(fmt::format("no VmHWM in /proc/{}/status", pid));
  std::string_view rest = std::string_view(status).substr(at + kKey.size());
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  uint64_t kib = 0;
  auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), kib);
  if (error != std::errc() || end == rest.data()) return Error::protocol("unparsable VmHWM line");
  return static_cast<double>(kib) / 1024.0;
}

// (1) and (3): launch, wait for HELLO, run `true`, read QEMU's VmHWM, kill.
Result<ColdBootSample> measure_cold_boot(engine::qemu::QemuEngine& engine, const guest::GuestKit& kit,
                                         int run) {
  TempDir runtime_dir = KILN_TRY(TempDir::create("kiln-bench-"));
  engine::VmSpec spec{.name = fmt::format("bench-boot-{}", run),
                      .cpus = kCpus,
                      .memory_mib = kMemoryMib,
                      .kernel = kit.kernel,
                      .initrd = kit.initramfs,
                      .runtime_dir = runtime_dir.path(),
                      .die_with_launcher = true};
  Clock::time_point start = Clock::now();
  std::unique_ptr<engine::VmInstance> vm = KILN_TRY(engine.launch(spec));
  UniqueFd channel = KILN_TRY(vm->connect_agent());
  auto connection = KILN_TRY(agent::AgentConnection::connect(std::move(channel), kAgentTimeout));
  ColdBootSample sample{.seconds_to_hello = seconds_since(start)};

  agent::ProcessId id = KILN_TRY(connection->start_process({.argv = {"true"}}));
  auto status = KILN_TRY(agent::attach_process(*connection, id, {}));
  if (status.shell_code() != 0)
    return Error::internal(fmt::format("`true` in the guest returned {}", status.shell_code()));

  // QemuEngine::launch always returns a QemuVm; the pid is QEMU's own (spawned directly, no wrapper).
  auto* qemu_vm = dynamic_cast<engine::qemu::QemuVm*>(vm.get());
  if (qemu_vm == nullptr) return Error::internal("the QEMU engine returned a VM that is not a QemuVm");
  sample.peak_rss_mib = KILN_TRY(peak_rss_mib(qemu_vm->monitor_pid()));
  KILN_TRY(vm->kill());
  return sample;
}

// Spawns argv with stdout discarded (stderr kept, for diagnostics) and times it to exit.
Result<double> time_command(const std::vector<std::string>& argv) {
  Clock::time_point start = Clock::now();
  ChildProcess child = KILN_TRY(ChildProcess::spawn({.argv = argv,
                                                     .stdin_mode = Stdio::kNull,
                                                     .stdout_mode = Stdio::kNull,
                                                     .stderr_mode = Stdio::kInherit}));
  ExitStatus status = KILN_TRY(child.wait());
  double seconds = seconds_since(start);
  if (!status.success()) return Error::internal(fmt::format("{} {}", argv.front(), status.describe()));
  return seconds;
}

struct Summary {
  double median = 0;
  double min = 0;
  double max = 0;
};

Summary summarize(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  double median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

std::string load_average() {
  auto text = read_file("/proc/loadavg", 256);
  if (!text) return "unknown";
  // The first three fields: the 1, 5 and 15 minute averages.
  size_t end = 0;
  for (int field = 0; field < 3 && end != std::string::npos; ++field) end = text->find(' ', end + 1);
  return text->substr(0, end);
}

Result<std::string> qemu_version(const std::string& qemu) {
  CommandOutput output = KILN_TRY(run_command({qemu, "-version"}));
  std::string_view text = output.stdout_text;
  return std::string(text.substr(0, text.find('\n')));
}

void print_row(std::string_view name, const std::vector<double>& values, std::string_view unit, double scale,
               int precision) {
  Summary s = summarize(values);
  fmt::print("{:<46} {:>10.{}f} {:>10.{}f} {:>10.{}f}  {}\n", name, s.median * scale, precision,
             s.min * scale, precision, s.max * scale, precision, unit);
}

Result<void> run(const Options& options) {
  auto engine = KILN_TRY(engine::qemu::QemuEngine::create(
      options.qemu == "qemu-system-x86_64" ? "" : options.qemu, engine::detect_accelerator()));
  guest::GuestKit kit = KILN_TRY(guest::resolve_guest_kit({}));
  std::string version = KILN_TRY(qemu_version(options.qemu));
  std::string load_before = load_average();

  fmt::print("kiln_bench_boot: {} runs (+1 untimed warm-up), {} vCPU, {} MiB, accelerator {}\n", options.runs,
             kCpus, kMemoryMib, engine::to_string(engine->accelerator()));
  fmt::print("  {}\n  kernel {}\n  kiln   {}\n  load average before: {}\n", version, kit.kernel, options.kiln,
             load_before);
  (void)std::fflush(stdout);

  std::vector<double> hello, vm_run, vm_run_cold, rss, floor;
  // Run 0 warms the page cache (kernel, initramfs, binaries) and is not counted. Each run does every
  // measurement in turn, so a change in machine load shows in all of them alike rather than in one.
  for (int iteration = 0; iteration <= options.runs; ++iteration) {
    double floor_seconds = KILN_TRY_CONTEXT(time_command({options.qemu, "-version"}), "qemu -version");
    ColdBootSample cold = KILN_TRY_CONTEXT(measure_cold_boot(*engine, kit, iteration), "cold boot");
    // The warm-up run also builds the template the forked runs use (once per template cache).
    double vm_run_seconds =
        KILN_TRY_CONTEXT(time_command({options.kiln, "vm", "run", "--", "true"}), "kiln vm run");
    double vm_run_cold_seconds = KILN_TRY_CONTEXT(
        time_command({options.kiln, "vm", "run", "--boot=cold", "--", "true"}), "kiln vm run --boot=cold");
    if (iteration == 0) continue;
    vm_run_cold.push_back(vm_run_cold_seconds);
    floor.push_back(floor_seconds);
    hello.push_back(cold.seconds_to_hello);
    rss.push_back(cold.peak_rss_mib);
    vm_run.push_back(vm_run_seconds);
    (void)std::fprintf(
        stderr, "run %d/%d: hello %.3f s, vm run %.3f s (cold %.3f s), rss %.1f MiB, qemu -version %.3f s\n",
        iteration, options.runs, cold.seconds_to_hello, vm_run_seconds, vm_run_cold_seconds,
        cold.peak_rss_mib, floor_seconds);
  }

  fmt::print("\n{:<46} {:>10} {:>10} {:>10}\n", "measurement", "median", "min", "max");
  print_row("cold boot: launch -> agent HELLO answered", hello, "s", 1, 3);
  print_row("`kiln vm run -- true` (fork), end to end", vm_run, "s", 1, 3);
  print_row("`kiln vm run --boot=cold -- true`", vm_run_cold, "s", 1, 3);
  print_row("QEMU peak RSS (VmHWM, after `true`)", rss, "MiB", 1, 1);
  print_row("peer: `qemu-system-x86_64 -version`", floor, "ms", 1000, 1);
  fmt::print("\nload average after: {}\n", load_average());
  return ok();
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  auto options = kiln::bench::parse_options(argc, argv);
  if (!options) {
    (void)std::fprintf(stderr, "kiln_bench_boot: %s\n", options.error().message().c_str());
    kiln::bench::print_usage();
    return 2;
  }
  if (auto done = kiln::bench::run(*options); !done) {
    (void)std::fprintf(stderr, "kiln_bench_boot: %s\n", done.error().message().c_str());
    return 1;
  }
  return 0;
}

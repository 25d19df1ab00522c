#include "cli/vm_run.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "agent/client/agent_connection.h"
#include "agent/client/attach.h"
#include "cli/terminal.h"
#include "cli/vm_run_storage.h"
#include "common/random_id.h"
#include "common/temp_dir.h"
#include "common/units.h"
#include "engine/engine_factory.h"
#include "engine/graceful_stop.h"
#include "engine/template_pool.h"
#include "guest/guest_kit.h"

namespace kiln::cli {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMinMemoryMib = 64;
// Under TCG with sanitizers and parallel VMs a boot can take far longer than the usual 1-3 s.
constexpr auto kAgentTimeout = 180s;
// How long a VM with a root disk gets to sync, remount read-only and power off before it is killed.
constexpr auto kStopGrace = 60s;

struct Validated {
  uint64_t memory_mib;
  RunStorage storage;
};

Result<Validated> validate(const VmRunOptions& options) {
  if (options.command.empty())
    return Error::invalid_argument("no command given (usage: kiln vm run [OPTIONS] -- CMD [ARGS...])");
  uint64_t bytes = KILN_TRY_CONTEXT(parse_size(options.memory, 1 << 20), "--memory");
  uint64_t mib = bytes >> 20;
  if (mib < kMinMemoryMib)
    return Error::invalid_argument(fmt::format("--memory {} is below the minimum of 64M", options.memory));
  uint64_t host_mib =
      static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) >> 20;
  if (mib > host_mib)
    return Error::invalid_argument(
        fmt::format("--memory {} is more than the host's {}M", options.memory, host_mib));
  unsigned host_cpus = std::max(1u, std::thread::hardware_concurrency());
  if (options.cpus == 0 || options.cpus > host_cpus) {
    return Error::invalid_argument(
        fmt::format("--cpus must be between 1 and {} (the host's cores)", host_cpus));
  }
  for (const auto& entry : options.env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=') {
      return Error::invalid_argument(fmt::format("-e {}: expected KEY=VALUE", entry));
    }
  }
  RunStorage storage = KILN_TRY(plan_run_storage(options.disks, options.root_disk, options.volumes));
  return Validated{mib, std::move(storage)};
}

// The guest's last words, for "the VM stopped" errors: the kernel panic line if there is one.
std::string last_console_words(const engine::VmInstance& vm) {
  std::string tail = vm.console_tail(4096);
  size_t panic = tail.rfind("Kernel panic");
  std::string_view line = tail;
  if (panic != std::string::npos) {
    line = std::string_view(tail).substr(panic);
    line = line.substr(0, line.find('\n'));
  } else {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' '))
      line.remove_suffix(1);
    size_t newline = line.rfind('\n');
    if (newline != std::string_view::npos) line.remove_prefix(newline + 1);
  }
  std::string clean;
  for (char c : line) {
    if (c != '\r') clean.push_back(c);
  }
  return clean;
}

// When the agent channel fails, the more useful cause is usually that the VM itself stopped.
Error explain_vm_failure(engine::VmInstance& vm, const Error& error, std::string_view stage) {
  auto exited = vm.wait_for_exit(2s);
  if (exited && *exited) {
    std::string words = last_console_words(vm);
    return Error::unavailable(fmt::format("the VM stopped {} (QEMU {}){}{}", stage, (*exited)->describe(),
                                          words.empty() ? "" : ": ", words));
  }
  return error.with_context(fmt::format("VM failed {}", stage));
}

// While the VM boots, a terminating signal must still end `kiln` promptly and leave nothing behind: the
// handler removes the runtime directory's files (unlink/rmdir are async-signal-safe) and re-raises. QEMU dies
// with us (PR_SET_PDEATHSIG).
char g_boot_runtime_dir[256];

void remove_runtime_dir_and_die(int sig) {
  static constexpr const char* kFiles[] = {"/qmp.sock", "/agent.sock", "/console.log", "/qemu.log"};
  char path[512];
  for (const char* file : kFiles) {
    size_t dir_length = ::strnlen(g_boot_runtime_dir, sizeof g_boot_runtime_dir);
    size_t file_length = ::strlen(file);
    if (dir_length == 0 || dir_length + file_length + 1 > sizeof path) break;
    ::memcpy(path, g_boot_runtime_dir, dir_length);
    ::memcpy(path + dir_length, file, file_length + 1);
    ::unlink(path);
  }
  if (g_boot_runtime_dir[0]) ::rmdir(g_boot_runtime_dir);
  (void)::signal(sig, SIG_DFL);
  (void)::raise(sig);
}

void clean_up_on_signal_while_booting(const std::string& runtime_dir) {
  (void)::snprintf(g_boot_runtime_dir, sizeof g_boot_runtime_dir, "%s", runtime_dir.c_str());
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) (void)::signal(sig, remove_runtime_dir_and_die);
}

// The agent reports in HELLO_REPLY whether it could boot into the root disk; without it the command would
// silently run in the initramfs.
Result<void> check_root_disk(const agent::AgentConnection& connection, const std::string& file) {
  const auto& root = connection.agent_info().root;
  if (!root) {
    return Error::unsupported(fmt::format(
        "--root-disk {}: the VM's agent does not support root disks (it is older than kiln)", file));
  }
  if (!root->mounted) {
    return Error::failed_precondition(
        fmt::format("--root-disk {}: the VM could not boot from it: {}", file, root->error));
  }
  return ok();
}

Result<void> mount_volumes(agent::AgentConnection& connection, const RunStorage& storage) {
  for (size_t i = 0; i < storage.mounts.size(); ++i) {
    KILN_TRY_CONTEXT(connection.mount(storage.mounts[i]), fmt::format("-v {}", storage.volume_args[i]));
  }
  return ok();
}

// A root disk must be left clean: ask the agent to sync, remount read-only and power off. Without a root disk
// the VM has nothing to flush and is killed (the VM's destructor), the fastest teardown. A VM whose agent no
// longer answers is killed too: waiting for it would only delay the error.
void stop_vm(engine::VmInstance& vm, agent::AgentConnection& connection, const RunStorage& storage) {
  if (storage.root_disk < 0) return;
  if (auto exited = vm.wait_for_exit(0ms); !exited || *exited) return;
  if (!connection.ping(5s)) return;
  auto stopped = engine::stop_gracefully(vm, &connection, kStopGrace);
  if (stopped && *stopped == engine::StopOutcome::kKilled) {
    print_error(
        "warning: the VM did not power off in time and was killed; its root disk needs a journal replay");
  }
}

Result<int> run_command(const VmRunOptions& options, engine::VmInstance& vm,
                        agent::AgentConnection& connection, const RunStorage& storage);

// A VM a template can stand for: one without disks or 9p shares. A template's disk slots have the size the
// guest read at its boot (a 1 TiB placeholder): a user's --disk would show that size, and a filesystem made
// on it would outgrow the image. Containers fork with disks because Kiln made the filesystems on them.
bool forkable(const engine::VmSpec& spec) {
  return spec.disks.empty() && spec.shares.empty();
}

// Where templates live: kilnd's (with its default --root) when running as root, else the user's cache.
std::string template_dir() {
  if (const char* dir = std::getenv("KILN_TEMPLATE_DIR"); dir && *dir)
    return dir;  // NOLINT(concurrency-mt-unsafe)
  if (::geteuid() == 0) return "/var/lib/kiln/templates";
  return guest::default_cache_dir() + "/templates";
}

Result<int> run(const VmRunOptions& options) {
  Validated valid = KILN_TRY(validate(options));

  auto engine = KILN_TRY(engine::make_engine({}));
  guest::GuestKit kit =
      KILN_TRY(guest::resolve_guest_kit({.kernel = options.kernel, .initramfs = options.initrd}));

  // Declared before the VM so the VM (and its sockets) goes first, then the directory.
  TempDir runtime_dir = KILN_TRY(TempDir::create("kiln-vm-"));
  clean_up_on_signal_while_booting(runtime_dir.path());
  engine::VmSpec spec{.name = "run-" + std::to_string(::getpid()),
                      .cpus = options.cpus,
                      .memory_mib = valid.memory_mib,
                      .kernel = kit.kernel,
                      .initrd = kit.initramfs,
                      .runtime_dir = runtime_dir.path(),
                      .disks = valid.storage.disks,
                      .root_disk = valid.storage.root_disk,
                      .shares = valid.storage.shares,
                      .die_with_launcher = true};
  std::unique_ptr<engine::VmInstance> vm;
  bool forked = false;
  if (options.boot == "fork" && forkable(spec)) {
    // The same templates kilnd keeps (engine/template_pool.h); built here on first need.
    engine::TemplatePool templates({.dir = template_dir(), .run_dir = runtime_dir.path() + "/templates"},
                                   *engine);
    if (auto found = templates.template_for(spec)) {
      if (auto clone = engine->fork(*found, spec)) {
        vm = std::move(*clone);
        forked = true;
      }
    }
  }
  if (!vm) vm = KILN_TRY(engine->launch(spec));  // cold: asked for, or no template could be used

  auto channel = vm->connect_agent();
  if (!channel) return explain_vm_failure(*vm, channel.error(), "before its agent answered");
  auto connection = agent::AgentConnection::connect(std::move(*channel), kAgentTimeout);
  if (!connection) return explain_vm_failure(*vm, connection.error(), "before its agent answered");
  if (forked) {
    // The template's clock, RNG state and machine id are every clone's until this.
    auto machine_id = random_hex_id(16);
    auto identity = (*connection)->clone_init({.machine_id = machine_id ? *machine_id : ""});
    if (!identity) return explain_vm_failure(*vm, identity.error(), "while taking its identity");
  }
  if (valid.storage.root_disk >= 0) KILN_TRY(check_root_disk(**connection, options.root_disk));

  auto code = run_command(options, *vm, **connection, valid.storage);
  stop_vm(*vm, **connection, valid.storage);
  return code;
}

Result<int> run_command(const VmRunOptions& options, engine::VmInstance& vm,
                        agent::AgentConnection& connection, const RunStorage& storage) {
  if (auto mounted = mount_volumes(connection, storage); !mounted) {
    if (mounted.error().category() == ErrorCategory::kUnavailable) {
      return explain_vm_failure(vm, mounted.error(), "while mounting volumes");
    }
    return std::move(mounted).error();
  }

  bool stdin_is_tty = ::isatty(STDIN_FILENO);
  agent::ProcessSpec process{.argv = options.command, .cwd = options.workdir, .tty = options.tty};
  if (!options.env.empty()) {
    process.env =
        std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    for (const auto& entry : options.env) process.env->push_back(entry);
    if (options.tty) process.env->push_back("TERM=xterm");
  } else if (options.tty) {
    process.env = std::vector<std::string>{
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"};
  }
  if (options.tty) {
    if (auto size = terminal_size(stdin_is_tty ? STDIN_FILENO : STDOUT_FILENO)) process.size = *size;
  }
  // From here on, signals are the command's: forwarded to it rather than ending `kiln`.
  UniqueFd signals = KILN_TRY(block_forwarded_signals());
  auto id = connection.start_process(process);
  if (!id) {
    if (id.error().category() == ErrorCategory::kUnavailable)
      return explain_vm_failure(vm, id.error(), "while starting the command");
    fmt::print(stderr, "kiln: {}\n", id.error().message());
    return agent::exit_code_for_start_error(id.error());
  }

  std::optional<RawTerminal> raw;
  if (options.tty && options.interactive && stdin_is_tty)
    raw.emplace(KILN_TRY(RawTerminal::enter(STDIN_FILENO)));
  auto status =
      agent::attach_process(connection, *id,
                            {.stdin_fd = options.interactive ? STDIN_FILENO : -1,
                             .stdout_fd = STDOUT_FILENO,
                             .stderr_fd = STDERR_FILENO,
                             .signal_fd = signals.get(),
                             .tty_fd = options.tty ? (stdin_is_tty ? STDIN_FILENO : STDOUT_FILENO) : -1});
  raw.reset();
  if (!status) return explain_vm_failure(vm, status.error(), "while the command ran");
  return status->shell_code();
}

}  // namespace

int run_vm_run(const VmRunOptions& options) {
  auto code = run(options);
  if (!code) {
    print_error(code.error().message());
    return kExitKilnError;
  }
  return *code;
}

void register_vm_run(CLI::App& vm, Action& chosen) {
  auto options = std::make_shared<VmRunOptions>();
  auto* run = vm.add_subcommand("run", "Boot a throwaway VM, run a command in it, and exit with its status");
  run->add_option("--cpus", options->cpus, "Virtual CPUs")
      ->capture_default_str()
      ->check(whole_number(1, 1024));
  run->add_option("-m,--memory", options->memory, "Memory (e.g. 512M, 1G; a bare number is MiB)")
      ->capture_default_str();
  run->add_flag("-i,--interactive", options->interactive, "Keep stdin attached");
  run->add_flag("-t,--tty", options->tty, "Allocate a pseudo-TTY");
  run->add_option("-e,--env", options->env, "Set an environment variable (KEY=VALUE)")
      ->allow_extra_args(false);
  run->add_option("-w,--workdir", options->workdir, "Working directory inside the VM");
  run->add_option("--kernel", options->kernel, "Boot this kernel instead of Kiln's");
  run->add_option("--initrd", options->initrd, "Boot this initramfs instead of Kiln's (expert)");
  run->add_option("--disk", options->disks, "Attach a raw disk image (repeatable)")->allow_extra_args(false);
  run->add_option("--root-disk", options->root_disk, "Boot into this ext4 disk image (changes persist)");
  run->add_option("-v,--volume", options->volumes,
                  "Share a host directory: HOSTDIR:GUESTPATH[:ro] (a bare name "
                  "mounts at /mnt/hgfs/NAME)")
      ->allow_extra_args(false);
  run->add_option("--boot", options->boot,
                  "fork: resume a copy-on-write clone of a booted template (built once, then reused); cold: "
                  "boot the kernel (no memory shared with other VMs)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fork", "cold"}));
  run->add_option("command", options->command, "Command and arguments (after --)");
  run->callback([options, &chosen] { chosen = [options] { return run_vm_run(*options); }; });
}

}  // namespace kiln::cli

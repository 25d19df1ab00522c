// `kiln vm exec [-i] [-t] NAME CMD [ARGS...]`: a process in a running VM over kilnd's upgraded exec
// connection (see vm_exec_stream.h), exiting with the process's status (127: not found, 126: could not run).
// With -t the local terminal goes raw and follows window resizes; without it, Ctrl-C and friends are
// forwarded.
#include <fmt/core.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <optional>
#include <thread>

#include "cli/terminal.h"
#include "cli/vm_client.h"
#include "cli/vm_exec_stream.h"

namespace kiln::cli {
namespace {

using namespace std::chrono_literals;

// Control calls (resize, signal) happen while the stream is being pumped, so they must not wait for long.
constexpr auto kControlTimeout = 5s;
// The stream ends once the process's output was sent; its exit status is recorded around the same time.
constexpr auto kExitStatusWait = 10s;
constexpr int kExitOutputClosed = 128 + SIGPIPE;

struct ExecOptions {
  std::string vm;
  bool interactive = false;
  bool tty = false;
  std::vector<std::string> env;
  std::string workdir;
  std::string user;
};

int local_tty_fd() {
  return ::isatty(STDIN_FILENO) ? STDIN_FILENO : STDOUT_FILENO;
}

Json exec_body(const ExecOptions& options, const std::vector<std::string>& command) {
  Json body = {{"cmd", command}, {"tty", options.tty}, {"stdin", options.interactive}};
  if (!options.env.empty()) body["env"] = options.env;
  if (!options.workdir.empty()) body["workdir"] = options.workdir;
  if (!options.user.empty()) body["user"] = options.user;
  if (options.tty) {
    if (auto size = terminal_size(local_tty_fd())) {
      body["rows"] = size->rows;
      body["cols"] = size->cols;
    }
  }
  return body;
}

// Relays a local signal to the exec: a window size for SIGWINCH under -t, the signal itself otherwise.
void forward_signal(const VmApi& control, const std::string& exec_target, bool tty, int signal) {
  std::string target;
  if (signal == SIGWINCH) {
    auto size = tty ? terminal_size(local_tty_fd()) : std::nullopt;
    if (!size) return;
    target = fmt::format("{}/resize?h={}&w={}", exec_target, size->rows, size->cols);
  } else {
    target = fmt::format("{}/signal?signal={}", exec_target, signal);
  }
  if (auto sent = control.call("POST", target); !sent) print_error(sent.error().message());
}

Result<int> exit_code(const VmApi& api, const std::string& exec_target) {
  auto deadline = std::chrono::steady_clock::now() + kExitStatusWait;
  for (;;) {
    Json status = KILN_TRY(api.call("GET", exec_target));
    auto code = status.find("exit_code");
    if (code != status.end() && code->is_number_integer()) return code->get<int>();
    std::string error = status.value("error", "");
    if (!status.value("running", false) || std::chrono::steady_clock::now() > deadline) {
      return Error::unavailable(fmt::format("the exec's stream ended without an exit status{}{}",
                                            error.empty() ? "" : ": ", error));
    }
    std::this_thread::sleep_for(50ms);
  }
}

Result<int> exec(const VmApi& api, const ExecOptions& options, const std::vector<std::string>& command) {
  auto request =
      api::http::ClientRequest::json("POST", vm_target(options.vm, "exec"), exec_body(options, command));
  auto upgraded = KILN_TRY(api.client().request_upgrade_with_head(request));
  auto exec_id = upgraded.head.headers.get("X-Kiln-Exec-Id");
  if (!exec_id || exec_id->empty())
    return Error::protocol("kilnd did not name the exec (no X-Kiln-Exec-Id header)");
  std::string exec_target = vm_target(options.vm, fmt::format("exec/{}", percent_encode(*exec_id)));

  // From here on, signals are the process's: forwarded to it rather than ending `kiln`.
  UniqueFd signals = KILN_TRY(block_forwarded_signals());
  VmApi control(api::http::Client(api.client().endpoint(), {.timeout = kControlTimeout}));
  std::optional<RawTerminal> raw;
  if (options.tty && options.interactive && ::isatty(STDIN_FILENO))
    raw.emplace(KILN_TRY(RawTerminal::enter(STDIN_FILENO)));
  auto ended = pump_exec_stream(
      {.socket = upgraded.connection.fd.get(),
       .already_read = std::move(upgraded.connection.buffered),
       .tty = options.tty,
       .stdin_fd = options.interactive ? STDIN_FILENO : -1,
       .signal_fd = signals.get(),
       .on_signal = [&](int signal) { forward_signal(control, exec_target, options.tty, signal); }});
  raw.reset();
  upgraded.connection.fd.reset();
  if (!ended) return ended.error();
  if (*ended == StreamEnd::kOutputClosed) return kExitOutputClosed;
  return exit_code(api, exec_target);
}

}  // namespace

void register_vm_exec_command(CLI::App& vm, std::shared_ptr<DaemonAddress> address, Action& chosen) {
  auto options = std::make_shared<ExecOptions>();
  auto* cmd = vm.add_subcommand("exec", "Run a command in a running VM");
  // Everything after the VM's name is the command, its own options included (`kiln vm exec web ls -l`). Not
  // with fallthrough, which would hand the command's words to `vm`; so -H goes before `vm` here.
  cmd->fallthrough(false);
  cmd->prefix_command();
  cmd->add_flag("-i,--interactive", options->interactive, "Keep stdin attached");
  cmd->add_flag("-t,--tty", options->tty, "Allocate a pseudo-TTY");
  cmd->add_option("-e,--env", options->env, "Set an environment variable (KEY=VALUE)")
      ->allow_extra_args(false);
  cmd->add_option("-w,--workdir", options->workdir, "Working directory inside the VM");
  cmd->add_option("-u,--user", options->user, "Numeric UID[:GID] to run as");
  cmd->add_option("vm", options->vm, "VM name or id")->required();
  // The command's slot. It takes no word itself (its check refuses every one), so the first word after the
  // VM's name starts prefix_command's rest-of-the-line, options included. Its being open is what lets `--`
  // after the VM's name end the options here: CLI11 hands a `--` met with no positional left to fill back to
  // the parent command, which then chokes on the command's words ("The following arguments were not
  // expected").
  cmd->add_option("command", "Command and its arguments (after the VM's name, or after --)")
      ->check(CLI::Validator([](const std::string&) { return std::string("rest of the line"); }, ""));
  cmd->validate_positionals();
  cmd->callback([options, address, cmd, &chosen] {
    std::vector<std::string> command = cmd->remaining();
    // Under prefix_command an unknown option before the VM's name lands here too, ahead of the command.
    if (!command.empty() && command.front().starts_with("-") && command.front() != "--") {
      throw CLI::ExtrasError("exec", {command.front()});
    }
    if (!command.empty() && command.front() == "--") command.erase(command.begin());
    chosen = [options, address, command]() -> int {
      if (command.empty()) {
        print_error("no command given (usage: kiln vm exec [OPTIONS] VM CMD [ARGS...])");
        return 2;
      }
      for (const auto& entry : options->env) {
        if (entry.find('=') == std::string::npos || entry.front() == '=') {
          print_error(fmt::format("-e {}: expected KEY=VALUE", entry));
          return 2;
        }
      }
      return with_api(address,
                      [options, command](const VmApi& api) { return exec(api, *options, command); })();
    };
  });
}

}  // namespace kiln::cli

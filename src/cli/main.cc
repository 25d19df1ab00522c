// kiln: the command-line client. Each area registers its subcommands from its own file (vm_*.cc,
// image_*.cc); main parses, then runs the chosen action and exits with its code.
#include <fmt/core.h>

#include <csignal>
#include <cstdlib>

#include "cli/command.h"
#include "cli/vm_client.h"
#include "common/log.h"
#include "kiln/version.h"

namespace kiln::cli {
void print_error(std::string_view message) {
  fmt::print(stderr, "kiln: {}\n", message);
}
}  // namespace kiln::cli

int main(int argc, char** argv) {
  // A closed pipe must surface as EPIPE on the write that hit it, not kill the CLI.
  (void)std::signal(SIGPIPE, SIG_IGN);
  // The libraries' progress lines (a template built, a state restored) are kilnd's log material; the CLI
  // reports through its own output and "kiln: ..." errors. KILN_LOG_LEVEL=info|debug shows them.
  kiln::log::set_level(kiln::log::Level::kWarn);
  if (const char* level = std::getenv("KILN_LOG_LEVEL"); level && *level) {  // NOLINT(concurrency-mt-unsafe)
    (void)kiln::log::set_level_by_name(level);
  }
  CLI::App app{"kiln: an API- and CLI-driven hypervisor; every container a VM", "kiln"};
  app.set_version_flag("--version", fmt::format("kiln version {}", kiln::kVersion));
  app.require_subcommand(0, 1);

  kiln::cli::Action chosen;
  auto address = std::make_shared<kiln::cli::DaemonAddress>();
  kiln::cli::add_host_option(app, *address);
  // Registration table: one line per area.
  kiln::cli::register_vm_commands(app, address, chosen);
  kiln::cli::register_image_commands(app, address, chosen);
  kiln::cli::register_template_commands(app, address, chosen);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForVersion& version) {
    return app.exit(version);
  } catch (const CLI::ParseError& error) {
    // One line, like every other Kiln error; 2 is the conventional exit code for usage errors.
    kiln::cli::print_error(fmt::format("{} (see --help)", error.what()));
    return 2;
  }
  if (!chosen) {
    fmt::print("{}", app.help());
    return 0;
  }
  return chosen();
}

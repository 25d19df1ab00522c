// kiln: the command-line client. Subcommands live in their own files (vm_*.cc, image_*.cc) and register
// on the CLI11 app here.
#include <CLI/CLI.hpp>
#include <csignal>
#include <fmt/core.h>

#include "kiln/version.h"

int main(int argc, char** argv) {
  // A closed pipe must surface as EPIPE on the write that hit it, not kill the CLI.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"kiln: an API- and CLI-driven hypervisor; every container a VM", "kiln"};
  app.set_version_flag("--version", fmt::format("kiln version {}", kiln::kVersion));
  app.require_subcommand(0, 1);
  CLI11_PARSE(app, argc, argv);
  if (app.get_subcommands().empty()) {
    fmt::print("{}", app.help());
  }
  return 0;
}

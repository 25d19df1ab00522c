// `kiln vm ...`: VM subcommands.
#include "cli/command.h"

namespace kiln::cli {

void register_vm_commands(CLI::App& app, Action& chosen) {
  auto* vm = app.add_subcommand("vm", "Run and manage virtual machines");
  vm->require_subcommand(1);
  (void)chosen;
}

}  // namespace kiln::cli

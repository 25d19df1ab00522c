// `kiln vm ...`: VM subcommands, one file each.
#include "cli/command.h"
#include "cli/vm_run.h"

namespace kiln::cli {

void register_vm_commands(CLI::App& app, Action& chosen) {
  auto* vm = app.add_subcommand("vm", "Run and manage virtual machines");
  vm->require_subcommand(1);
  register_vm_run(*vm, chosen);
}

}  // namespace kiln::cli

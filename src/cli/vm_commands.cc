// `kiln vm ...`: VM subcommands. `run` boots a throwaway VM itself; the others are kilnd's Kiln VM API.
#include "cli/command.h"
#include "cli/vm_client.h"
#include "cli/vm_run.h"

namespace kiln::cli {

void register_vm_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen) {
  auto* vm = app.add_subcommand("vm", "Run and manage virtual machines");
  vm->require_subcommand(1);
  register_vm_run(*vm, chosen);
  // -H may also follow the subcommands (`kiln vm ls -H unix:///tmp/kiln.sock`); `run` is not affected.
  vm->fallthrough();
  register_vm_create_command(*vm, address, chosen);
  register_vm_manage_commands(*vm, address, chosen);
  register_vm_exec_command(*vm, address, chosen);
}

}  // namespace kiln::cli

// How `kiln` subcommands plug into the CLI: each area (vm, image, ...) registers its CLI11 subcommands and,
// when one is chosen, stores the action to run after parsing. Actions return the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>

namespace kiln::cli {

using Action = std::function<int()>;

struct DaemonAddress;  // vm_client.h: where kilnd listens (-H / KILN_HOST)

// Each sets `chosen` (through a CLI11 callback) when one of its subcommands is on the command line.
// `address` is filled by the top-level -H option before any action runs.
void register_vm_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen);
void register_image_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen);

// Prints "kiln: <message>" on stderr: the CLI's one-line error format.
void print_error(std::string_view message);

}  // namespace kiln::cli

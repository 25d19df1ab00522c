// How `kiln` subcommands plug into the CLI: each area (vm, image, ...) registers its CLI11 subcommands and,
// when one is chosen, stores the action to run after parsing. Actions return the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>

#include "common/units.h"

namespace kiln::cli {

using Action = std::function<int()>;

struct DaemonAddress;  // vm_client.h: where kilnd listens (-H / KILN_HOST)

// Each sets `chosen` (through a CLI11 callback) when one of its subcommands is on the command line.
// `address` is filled by the top-level -H option before any action runs.
void register_vm_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen);
void register_image_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen);
void register_template_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen);

// For number options: CLI11's own conversion takes "-1" for a uint64_t (strtoull wraps it) and "0x10" for 16;
// this runs Kiln's one number parser first, so the CLI refuses what the API refuses.
inline CLI::Validator whole_number(uint64_t min = 0, uint64_t max = std::numeric_limits<uint64_t>::max()) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        auto value = parse_unsigned<uint64_t>(text, "the value", min, max);
        return value ? std::string() : value.error().message();
      },
      "");  // the option's type already reads UINT in --help
}

// Prints "kiln: <message>" on stderr: the CLI's one-line error format.
void print_error(std::string_view message);

}  // namespace kiln::cli

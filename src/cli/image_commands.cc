// `kiln image ...`: image subcommands.
#include "cli/command.h"

namespace kiln::cli {

void register_image_commands(CLI::App& app, Action& chosen) {
  auto* image = app.add_subcommand("image", "Pull, load and manage OCI images");
  image->require_subcommand(1);
  (void)chosen;
}

}  // namespace kiln::cli

// kilnd: the daemon (Kiln VM API, Docker Engine API, VM and container managers). Grows issue by issue.
#include <CLI/CLI.hpp>
#include <csignal>
#include <fmt/core.h>

#include "kiln/version.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"kilnd: the Kiln daemon", "kilnd"};
  app.set_version_flag("--version", fmt::format("kilnd version {}", kiln::kVersion));
  CLI11_PARSE(app, argc, argv);
  fmt::print(stderr, "kilnd: the daemon has no services yet; see `kilnd --help`\n");
  return 1;
}

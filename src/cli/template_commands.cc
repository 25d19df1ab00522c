// `kiln template ls|warm|rm`: kilnd's fork templates (docs/fork.md) through /v1/templates.
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/vm_client.h"

namespace kiln::cli {
namespace {

void print_template_table(const Json& templates, bool quiet) {
  if (!quiet)
    fmt::print("{:<14} {:>5} {:>10} {:>7} {:>6}  {}\n", "TEMPLATE", "CPUS", "MEMORY", "IN USE", "POOLED",
               "STATUS");
  for (const Json& entry : templates) {
    std::string key = entry.value("key", "").substr(0, 12);
    if (quiet) {
      fmt::print("{}\n", key);
      continue;
    }
    std::string error = entry.value("error", "");
    fmt::print("{:<14} {:>5} {:>7} MiB {:>7} {:>6}  {}\n", key, entry.value("cpus", 0),
               entry.value("memory_mib", 0), entry.value("in_use", 0), entry.value("pooled", 0),
               error.empty() ? "ready" : "unusable: " + error);
  }
}

}  // namespace

void register_template_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen) {
  auto* group =
      app.add_subcommand("template", "Fork templates: the booted guests container VMs are forked from");
  group->require_subcommand(1);
  group->fallthrough();  // -H may follow the subcommands
  {
    auto* cmd = group->add_subcommand("ls", "List templates and the running VMs forked from each");
    auto quiet = std::make_shared<bool>(false);
    auto format = std::make_shared<std::string>("table");
    cmd->add_flag("-q,--quiet", *quiet, "Only template keys (12 characters)");
    cmd->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
    cmd->callback([&chosen, address, quiet, format] {
      chosen = with_api(address, [quiet, format](const VmApi& api) -> Result<int> {
        Json templates = KILN_TRY(api.call("GET", "/v1/templates"));
        if (*format == "json") {
          fmt::print("{}\n", templates.dump(2));
        } else {
          print_template_table(templates, *quiet);
        }
        return 0;
      });
    });
  }
  {
    auto* cmd = group->add_subcommand("warm", "Build the template containers of this size fork from, now");
    auto cpus = std::make_shared<uint64_t>(0);
    auto memory = std::make_shared<uint64_t>(0);
    cmd->add_option("--cpus", *cpus, "vCPUs (default: a container's, 1)")->check(whole_number(1, 1024));
    cmd->add_option("-m,--memory", *memory, "Memory in MiB (default: a container's, 512)")
        ->check(whole_number(1));
    cmd->callback([&chosen, address, cpus, memory] {
      chosen = with_api(address, [cpus, memory](const VmApi& api) -> Result<int> {
        Json body = Json::object();
        if (*cpus > 0) body["cpus"] = *cpus;
        if (*memory > 0) body["memory_mib"] = *memory;
        Json made = KILN_TRY(api.call("POST", "/v1/templates", body));
        fmt::print("{}\n", made.value("key", ""));
        return 0;
      });
    });
  }
  {
    auto* cmd = group->add_subcommand("rm", "Remove templates no running VM is forked from");
    auto keys = std::make_shared<std::vector<std::string>>();
    cmd->add_option("template", *keys, "Template keys or unique prefixes")->required();
    cmd->callback([&chosen, address, keys] {
      chosen = with_api(address, [keys](const VmApi& api) -> Result<int> {
        int code = 0;
        for (const std::string& key : *keys) {
          // As `kiln image rm`: go on with the others, report each failure, exit 1 if any failed.
          if (auto removed = api.call("DELETE", "/v1/templates/" + key); !removed) {
            print_error(removed.error().message());
            code = 1;
            continue;
          }
          fmt::print("{}\n", key);
        }
        return code;
      });
    });
  }
}

}  // namespace kiln::cli

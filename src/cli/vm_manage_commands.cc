// `kiln vm ls|inspect|start|stop|kill|restart|pause|resume|rm|console|ip|clone`: one Kiln VM API call per VM
// named, printed the way the docker CLI prints its counterparts. Commands taking several VMs go on past a
// failure, report it as "kiln: <message>" and exit 1 at the end.
#include <fmt/core.h>
#include <unistd.h>

#include <ctime>

#include "cli/vm_client.h"
#include "cli/vm_networking.h"
#include "cli/vm_table.h"
#include "common/unique_fd.h"

namespace kiln::cli {
namespace {

struct ListOptions {
  std::vector<std::string> filters;
  std::string format = "table";
  bool quiet = false;
};

// "label=k=v", "state=running", "name=web" -> a query parameter of GET /v1/vms.
std::string filter_query(const std::vector<std::string>& filters) {
  std::string query;
  for (const auto& filter : filters) {
    auto equals = filter.find('=');
    query += fmt::format("{}{}={}", query.empty() ? "?" : "&", filter.substr(0, equals),
                         percent_encode(filter.substr(equals + 1)));
  }
  return query;
}

std::string check_filter(const std::string& filter) {
  auto equals = filter.find('=');
  std::string key = filter.substr(0, equals);
  if (equals == std::string::npos || (key != "label" && key != "state" && key != "name")) {
    return fmt::format("bad filter \"{}\": use label=KEY[=VALUE], state=STATE or name=NAME", filter);
  }
  return "";
}

Result<int> list_vms(const VmApi& api, const ListOptions& options) {
  Json vms = KILN_TRY(api.call("GET", "/v1/vms" + filter_query(options.filters)));
  if (options.format == "json") {
    fmt::print("{}\n", vms.dump(2));
  } else if (options.quiet) {
    for (const auto& vm : vms) fmt::print("{}\n", vm.value("id", "").substr(0, 12));
  } else {
    fmt::print("{}", format_vm_table(vms, std::time(nullptr)));
  }
  return 0;
}

Result<int> inspect_vms(const VmApi& api, const std::vector<std::string>& names) {
  Json found = Json::array();
  int code = 0;
  for (const auto& name : names) {
    auto vm = api.call("GET", vm_target(name));
    if (!vm && vm.error().category() != ErrorCategory::kNotFound) return vm.error();
    if (vm) {
      found.push_back(std::move(*vm));
    } else {
      print_error(vm.error().message());
      code = 1;
    }
  }
  fmt::print("{}\n", found.dump(2));
  return code;
}

// POST /v1/vms/{vm}/{action}[query] for each VM; its name is printed on success.
Result<int> act_on_each(const VmApi& api, const std::vector<std::string>& names, std::string_view action,
                        const std::string& query) {
  int code = 0;
  for (const auto& name : names) {
    auto done = action == "rm" ? api.call("DELETE", vm_target(name) + query)
                               : api.call("POST", vm_target(name, action) + query);
    if (!done && done.error().category() == ErrorCategory::kUnavailable) return done.error();
    if (done) {
      fmt::print("{}\n", name);
      (void)std::fflush(stdout);
    } else {
      print_error(done.error().message());
      code = 1;
    }
  }
  return code;
}

Result<int> show_console(const VmApi& api, const std::string& name, bool follow,
                         std::optional<uint64_t> tail) {
  std::string target = vm_target(name, "console");
  std::string query;
  if (follow) query += "&follow=1";
  if (tail) query += fmt::format("&tail={}", *tail);
  if (!query.empty()) target += "?" + query.substr(1);
  bool output_ok = true;
  auto response = KILN_TRY(api.client().request_stream({.target = target}, [&](std::string_view data) {
    output_ok = static_cast<bool>(write_all(STDOUT_FILENO, data));
    return output_ok;
  }));
  if (response.status < 200 || response.status >= 300) return api::http::error_from_response(response);
  return output_ok ? 0 : 1;
}

// One address per line (one per NIC); none: the VM itself says why (stopped, on no network, or no NIC).
Result<int> show_addresses(const VmApi& api, const std::string& name) {
  Json reply = KILN_TRY(api.call("GET", vm_target(name, "ip")));
  std::vector<std::string> found;
  if (auto addresses = reply.find("addresses"); addresses != reply.end() && addresses->is_array()) {
    for (const auto& address : *addresses) {
      if (address.is_string() && !address.get<std::string>().empty())
        found.push_back(address.get<std::string>());
    }
  }
  if (found.empty()) {
    Json vm = KILN_TRY(api.call("GET", vm_target(name)));
    return Error::failed_precondition(no_address_reason(vm));
  }
  for (const auto& address : found) fmt::print("{}\n", address);
  return 0;
}

// POST /v1/vms/{source}/clone; prints the new VM's id, as `kiln vm create` does.
Result<int> clone_vm(const VmApi& api, const std::string& source, const std::string& name, bool start) {
  Json body = {{"start", start}};
  if (!name.empty()) body["name"] = name;
  Json vm = KILN_TRY(api.call("POST", vm_target(source, "clone"), body));
  fmt::print("{}\n", vm.value("id", ""));
  return 0;
}

using Names = std::shared_ptr<std::vector<std::string>>;

Names add_names(CLI::App& cmd) {
  auto names = std::make_shared<std::vector<std::string>>();
  cmd.add_option("vm", *names, "VM names or ids")->required();
  return names;
}

void register_lifecycle(CLI::App& vm, const std::shared_ptr<DaemonAddress>& address, Action& chosen,
                        std::string_view action, std::string_view help, bool takes_timeout) {
  auto* cmd = vm.add_subcommand(std::string(action), std::string(help));
  cmd->fallthrough();
  Names names = add_names(*cmd);
  auto timeout = std::make_shared<std::optional<unsigned>>();
  if (takes_timeout)
    cmd->add_option("-t,--time", *timeout, "Seconds to wait for a clean shutdown before killing (default 10)")
        ->check(whole_number(0, 86400));
  cmd->callback([address, names, timeout, action, &chosen] {
    std::string query = *timeout ? fmt::format("?timeout={}", **timeout) : "";
    chosen = with_api(address, [names, action, query](const VmApi& api) {
      return act_on_each(api, *names, action, query);
    });
  });
}

}  // namespace

void register_vm_manage_commands(CLI::App& vm, std::shared_ptr<DaemonAddress> address, Action& chosen) {
  {
    auto* cmd = vm.add_subcommand("ls", "List VMs");
    cmd->alias("list");
    cmd->fallthrough();
    auto options = std::make_shared<ListOptions>();
    cmd->add_option("-f,--filter", options->filters,
                    "label=KEY[=VALUE], state=STATE or name=NAME (repeatable)")
        ->allow_extra_args(false)
        ->check(CLI::Validator(check_filter, "FILTER"));
    cmd->add_option("--format", options->format, "table or json")->check(CLI::IsMember({"table", "json"}));
    cmd->add_flag("-q,--quiet", options->quiet, "Only VM ids");
    cmd->callback([address, options, &chosen] {
      chosen = with_api(address, [options](const VmApi& api) { return list_vms(api, *options); });
    });
  }
  {
    auto* cmd = vm.add_subcommand("inspect", "Show VMs as a JSON array");
    cmd->fallthrough();
    Names names = add_names(*cmd);
    cmd->callback([address, names, &chosen] {
      chosen = with_api(address, [names](const VmApi& api) { return inspect_vms(api, *names); });
    });
  }
  register_lifecycle(vm, address, chosen, "start", "Boot stopped VMs", false);
  register_lifecycle(vm, address, chosen, "stop", "Shut VMs down cleanly (killed after --time)", true);
  register_lifecycle(vm, address, chosen, "kill", "Power VMs off at once", false);
  register_lifecycle(vm, address, chosen, "restart", "Stop, then start VMs", true);
  register_lifecycle(vm, address, chosen, "pause", "Freeze VMs' vCPUs (memory is kept)", false);
  register_lifecycle(vm, address, chosen, "resume", "Resume paused VMs", false);
  {
    auto* cmd = vm.add_subcommand("rm", "Delete VMs and their disks");
    cmd->fallthrough();
    Names names = add_names(*cmd);
    auto force = std::make_shared<bool>(false);
    cmd->add_flag("-f,--force", *force, "Kill running VMs first");
    cmd->callback([address, names, force, &chosen] {
      std::string query = *force ? "?force=1" : "";
      chosen = with_api(address,
                        [names, query](const VmApi& api) { return act_on_each(api, *names, "rm", query); });
    });
  }
  {
    auto* cmd = vm.add_subcommand("console", "Print a VM's serial console log");
    cmd->fallthrough();
    auto name = std::make_shared<std::string>();
    auto follow = std::make_shared<bool>(false);
    auto tail = std::make_shared<std::optional<uint64_t>>();
    cmd->add_option("vm", *name, "VM name or id")->required();
    cmd->add_flag("-f,--follow", *follow, "Keep printing while the VM runs");
    cmd->add_option("-n,--tail", *tail, "Only the last N lines")->check(whole_number());
    cmd->callback([address, name, follow, tail, &chosen] {
      chosen = with_api(address, [name, follow, tail](const VmApi& api) {
        return show_console(api, *name, *follow, *tail);
      });
    });
  }
  {
    auto* cmd = vm.add_subcommand(
        "clone",
        "Clone a VM: a running one instantly (the new VM runs on from its memory, not booted), a stopped one "
        "by copying its disk");
    cmd->fallthrough();
    auto source = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    auto no_start = std::make_shared<bool>(false);
    cmd->add_option("source", *source, "VM to clone (name or id)")->required();
    cmd->add_option("name", *name, "Name of the new VM (default: generated)");
    cmd->add_flag(
        "--no-start", *no_start,
        "Only copy the disk (taken while a running source is paused); the new VM boots at its start");
    cmd->callback([address, source, name, no_start, &chosen] {
      chosen = with_api(address, [source, name, no_start](const VmApi& api) {
        return clone_vm(api, *source, *name, !*no_start);
      });
    });
  }
  {
    auto* cmd = vm.add_subcommand("ip", "Print a VM's IPv4 addresses, one per NIC (exit 1 when it has none)");
    cmd->fallthrough();
    auto name = std::make_shared<std::string>();
    cmd->add_option("vm", *name, "VM name or id")->required();
    cmd->callback([address, name, &chosen] {
      chosen = with_api(address, [name](const VmApi& api) { return show_addresses(api, *name); });
    });
  }
}

}  // namespace kiln::cli

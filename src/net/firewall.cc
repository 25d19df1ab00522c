#include "net/firewall.h"

#include <fmt/format.h>

#include <fstream>
#include <vector>

#include "common/child_process.h"

namespace kiln::net::firewall {
namespace {

// Appends `rule` to `chain` of `table` unless it is there already (iptables -C first).
Result<void> ensure_rule(const std::string& table, const std::string& chain, std::vector<std::string> rule) {
  std::vector<std::string> check = {"iptables", "-w", "-t", table, "-C", chain};
  check.insert(check.end(), rule.begin(), rule.end());
  auto present = run_command(check);
  if (present && present->status.success()) return ok();
  std::vector<std::string> append = {"iptables", "-w", "-t", table, "-A", chain};
  append.insert(append.end(), rule.begin(), rule.end());
  KILN_TRY(run_command_checked(append));
  return ok();
}

Result<void> drop_rule(const std::string& table, const std::string& chain, std::vector<std::string> rule) {
  for (;;) {  // delete every copy
    std::vector<std::string> remove = {"iptables", "-w", "-t", table, "-D", chain};
    remove.insert(remove.end(), rule.begin(), rule.end());
    auto removed = run_command(remove);
    if (!removed) return removed.error();
    if (!removed->status.success()) return ok();
  }
}

// A sysctl of the calling thread's network namespace (/proc/sys/net resolves against it).
Result<void> write_sysctl(const std::string& path, const std::string& value, bool optional) {
  std::ofstream file(path);
  if (!file) {
    if (optional) return ok();
    return Error::internal(fmt::format("cannot open {}", path));
  }
  file << value;
  file.close();
  if (!file) return Error::internal(fmt::format("cannot write {} to {}", value, path));
  return ok();
}

}  // namespace

Result<void> set_up(const std::string& outbound_link) {
  KILN_TRY(write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", false));
  // Frames switched inside one bridge stay out of iptables (bridge-nf): only routed traffic meets the rules.
  KILN_TRY(write_sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables", "0", true));
  KILN_TRY_CONTEXT(run_command_checked({"iptables", "-w", "-P", "FORWARD", "DROP"}),
                   "set the forwarding policy of Kiln's network namespace");
  KILN_TRY(ensure_rule(
      "filter", "FORWARD",
      {"-i", outbound_link, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}));
  KILN_TRY(ensure_rule("nat", "POSTROUTING", {"-o", outbound_link, "-j", "MASQUERADE"}));
  return ok();
}

Result<void> allow_outbound(const std::string& bridge, const std::string& outbound_link) {
  return ensure_rule("filter", "FORWARD", {"-i", bridge, "-o", outbound_link, "-j", "ACCEPT"});
}

Result<void> deny_outbound(const std::string& bridge, const std::string& outbound_link) {
  return drop_rule("filter", "FORWARD", {"-i", bridge, "-o", outbound_link, "-j", "ACCEPT"});
}

}  // namespace kiln::net::firewall

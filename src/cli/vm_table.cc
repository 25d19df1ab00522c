#include "cli/vm_table.h"

#include <fmt/core.h>

#include <array>
#include <cstdio>
#include <optional>
#include <vector>

#include "common/rfc3339.h"

namespace kiln::cli {
namespace {

constexpr size_t kShortIdLength = 12;
constexpr std::array<std::string_view, 8> kHeaders = {"NAME", "ID",     "STATE", "IP",
                                                      "CPUS", "MEMORY", "DISK",  "CREATED"};
using Row = std::array<std::string, kHeaders.size()>;

std::string string_field(const Json& vm, const char* key) {
  auto it = vm.find(key);
  return it != vm.end() && it->is_string() ? it->get<std::string>() : "";
}

uint64_t number_field(const Json& vm, const char* key) {
  auto it = vm.find(key);
  if (it == vm.end() || !it->is_number_integer()) return 0;
  return it->is_number_unsigned() ? it->get<uint64_t>()
                                  : static_cast<uint64_t>(std::max<int64_t>(0, it->get<int64_t>()));
}

std::string plural(int64_t count, std::string_view unit) {
  return fmt::format("{} {}{} ago", count, unit, count == 1 ? "" : "s");
}

// The first NIC's address: the one a person connects to (docker ps shows none; multipass list shows this).
std::string first_address(const Json& vm) {
  auto addresses = vm.find("addresses");
  if (addresses == vm.end() || !addresses->is_array()) return "";
  for (const auto& address : *addresses) {
    if (address.is_string() && !address.get<std::string>().empty()) return address.get<std::string>();
  }
  return "";
}

Row row_for(const Json& vm, std::time_t now) {
  return {string_field(vm, "name"),
          string_field(vm, "id").substr(0, kShortIdLength),
          string_field(vm, "state"),
          first_address(vm),
          std::to_string(number_field(vm, "cpus")),
          format_mib(number_field(vm, "memory_mib")),
          format_mib(number_field(vm, "disk_mib")),
          time_ago(string_field(vm, "created_at"), now)};
}

}  // namespace

std::string format_mib(uint64_t mib) {
  if (mib < 1024) return fmt::format("{}M", mib);
  if (mib % 1024 == 0) return fmt::format("{}G", mib / 1024);
  return fmt::format("{:.1f}G", static_cast<double>(mib) / 1024.0);
}

std::string time_ago(std::time_t then, std::time_t now) {
  int64_t seconds = std::max<int64_t>(0, static_cast<int64_t>(now - then));
  if (seconds < 60) return "Less than a minute ago";
  if (seconds < 3600) return plural(seconds / 60, "minute");
  if (seconds < 2 * 86400) return plural(seconds / 3600, "hour");
  // Longer spans in the units docker uses (go-units' HumanDuration): days, weeks, months, years.
  int64_t days = seconds / 86400;
  if (days < 14) return plural(days, "day");
  if (days < 60) return plural(days / 7, "week");
  if (days < 730) return plural(days / 30, "month");
  return plural(days / 365, "year");
}

std::string time_ago(std::string_view rfc3339, std::time_t now) {
  auto then = parse_rfc3339(rfc3339);
  return then ? time_ago(*then, now) : std::string(rfc3339);
}

std::string format_vm_table(const Json& vms, std::time_t now) {
  std::vector<Row> rows;
  Row header;
  for (size_t i = 0; i < kHeaders.size(); ++i) header[i] = kHeaders[i];
  rows.push_back(header);
  if (vms.is_array()) {
    for (const auto& vm : vms) rows.push_back(row_for(vm, now));
  }
  std::array<size_t, kHeaders.size()> widths{};
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}   ", row[i], widths[i]);
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace kiln::cli

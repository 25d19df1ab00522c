// `kiln vm ls` (and the times in `kiln image ls`) for people: a table of VMs from the API's JSON, columns as
// wide as their widest cell (as docker ps prints). Pure functions of their inputs; any thread.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"

namespace kiln::cli {

// NAME, ID (12 characters), STATE, IP (the first NIC's address; empty while stopped or without a network),
// CPUS, MEMORY, DISK, CREATED; one line per VM of the array `vms`.
std::string format_vm_table(const Json& vms, std::time_t now);

// 512 -> "512M", 2048 -> "2G", 1536 -> "1.5G".
std::string format_mib(uint64_t mib);
// "2025-01-02T03:04:05Z" -> "5 minutes ago", relative to `now`; unparseable times come back as they are.
std::string time_ago(std::string_view rfc3339, std::time_t now);
std::string time_ago(std::time_t then, std::time_t now);

}  // namespace kiln::cli

// Parsing sizes people type: "512M", "1G", "2GiB", "1048576b". Pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/error.h"

namespace kiln {

// A size in bytes. Suffixes (case-insensitive, optional "iB"/"B"): b, k, m, g, t, all binary (1k = 1024).
// A bare number means `bare_unit` bytes each (e.g. 1 MiB for memory flags, as QEMU's -m does).
Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit = 1);

}  // namespace kiln

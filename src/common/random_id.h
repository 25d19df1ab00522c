// Random ids as Docker and Kiln show them: lower-case hex from the kernel's CSPRNG (container, VM and exec
// ids).
#pragma once

#include <string>

#include "common/error.h"

namespace kiln {

// 2 * `bytes` hex digits; 32 bytes give Docker's 64-digit ids.
Result<std::string> random_hex_id(size_t bytes = 32);

}  // namespace kiln

// The version string a Linux bzImage carries in its setup header (Linux boot protocol 2.00+, field
// kernel_version at 0x20E), so kilnd can say which kernel its containers run without booting one.
// Pure function over a file; any thread.
#pragma once

#include <string>

#include "common/error.h"

namespace kiln::guest {

// "6.1.158 (root@host) #1 SMP ..." -> the release, "6.1.158". kInvalidArgument when the file is not a bzImage
// or its header has no version string.
Result<std::string> kernel_release(const std::string& bzimage_path);
// The release out of a whole version string (its first word).
std::string release_of(std::string_view version_string);

}  // namespace kiln::guest

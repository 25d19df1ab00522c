// A directory tree as a tar file: how `kiln image load -i DIR` sends an OCI image layout directory to kilnd,
// which takes archives only (the daemon never reads paths on the client's machine).
#pragma once

#include <string>

#include "common/error.h"

namespace kiln::image {

// Writes `directory`'s directories and regular files (names relative to it) to `output_path`. Symlinks and
// other special files are refused: an image layout has none, and following them could leak host files.
Result<void> write_directory_tar(const std::string& directory, const std::string& output_path);

}  // namespace kiln::image

// Copying a directory's contents with everything a file system holds about them: how a Docker volume is
// filled from the image the first time a container mounts it ("copy-up").
#pragma once

#include "common/error.h"

namespace kiln::agent {

// Copies every entry below the directory `from_dir` into the directory `to_dir` (both open fds): regular
// files, directories, symlinks, FIFOs and device nodes, with their owners, modes and modification times; a
// file linked several times below `from_dir` is linked the same way below `to_dir`. Never follows a symlink
// of either tree. Entries already in `to_dir` make it fail (EEXIST): the caller copies into an empty one.
Result<void> copy_directory_contents(int from_dir, int to_dir);

}  // namespace kiln::agent

// Lexical path cleaning, one rule for every side of Kiln (kilnd's Docker mounts, the agent's file builtins,
// image archives): Go's path.Clean of an absolute path.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

// "/a//b/./c/.." -> "/a/b"; "" -> "/". ".." at the root stays at the root, so the result never climbs above
// it, and a relative path is taken as relative to "/". No symlink is looked at.
std::string clean_absolute_path(std::string_view path);

}  // namespace kiln

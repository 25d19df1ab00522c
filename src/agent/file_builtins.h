// kiln-agent's file builtins: what dockerd does with a container's filesystem (GET/PUT/HEAD
// /containers/{id}/archive, export, changes), done by the agent's own code so images need no tar. The agent
// runs one as a process (ProcessSpec::builtin) by re-executing itself (`kiln-agent --builtin NAME ...`), so
// the exec machinery carries the tar stream on stdin/stdout and errors on stderr. Each runs in a process of
// its own (single-threaded, exits when done); `--root DIR` makes it chroot into DIR first.
//
// Exit codes tell the host what went wrong (stderr has the sentence): see BuiltinExit.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::agent {

enum class BuiltinExit : int {
  kOk = 0,
  kFailed = 1,         // anything else: the message on stderr
  kNotFound = 2,       // the path does not exist
  kNotADirectory = 3,  // archive-put's destination is not a directory
  kBadArchive = 4,     // archive-put: an entry would leave the destination, or the tar is malformed
  kUsage = 5,          // unknown builtin or bad arguments
};

// The builtins (names as ProcessSpec::builtin carries them):
//   archive-stat PATH   one line of JSON: {"name","size","mode","mtime","linkTarget"} as dockerd's
//                       X-Docker-Container-Path-Stat (mode in Go's os.FileMode bits)
//   archive-get PATH    a tar of PATH on stdout, entries named from PATH's base name, as dockerd's GET
//   archive archive-put DIR [--no-overwrite-dir-non-dir] [--chown UID:GID]
//                       extracts the tar on stdin into DIR (which must be a directory)
//   export              a tar of the whole root on stdout, not descending into other filesystems
//   diff UPPER LOWER    the changes of an overlay upper directory against its lower one, one "A|C|D PATH"
//   line
//                       each, as dockerd computes `docker diff`
//   layer UPPER         the overlay upper directory as an image layer tar (OCI whiteouts: ".wh.NAME" for a
//                       deleted entry, ".wh..wh..opq" in an opaque directory): `docker commit`
// `root` (may be empty) is chrooted into first. Returns the process's exit code.
int run_file_builtin(std::string_view name, const std::string& root, const std::vector<std::string>& args);

}  // namespace kiln::agent

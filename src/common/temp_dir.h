// TempDir: a directory created with mkdtemp and removed, with everything inside, when the object dies
// (unless release()d). One owner thread.
#pragma once

#include <string>

#include "common/error.h"

namespace kiln {

class TempDir {
 public:
  // Creates `<parent>/<prefix>XXXXXX`; parent defaults to $TMPDIR or /tmp.
  static Result<TempDir> create(std::string_view prefix = "kiln-", std::string parent = "");

  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  // Keeps the directory on disk; returns its path.
  std::string release() { return std::exchange(path_, {}); }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// rm -rf without following symlinks; a missing path is not an error.
Result<void> remove_tree(const std::string& path);

}  // namespace kiln

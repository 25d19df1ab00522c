// A small tar codec (POSIX ustar with PAX extended headers; GNU long names read too) for the guest agent's
// file builtins (`docker cp`, `docker export`), which run in a static, unsanitized binary without libarchive.
// Writes what Go's archive/tar (and so dockerd) produces for the same entries: ustar headers, a PAX 'x'
// header before an entry whose name, link target, size, ids or times do not fit, xattrs as SCHILY.xattr.*.
// Reads ustar, PAX ('x'; 'g' is skipped) and GNU ('L', 'K') headers. Plain values; one instance per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln::tar {

inline constexpr size_t kBlockSize = 512;

enum class EntryType : char {
  kRegular = '0',
  kHardLink = '1',
  kSymlink = '2',
  kCharDevice = '3',
  kBlockDevice = '4',
  kDirectory = '5',
  kFifo = '6',
};

struct Header {
  std::string name;  // as stored: relative, directories end with '/'
  EntryType type = EntryType::kRegular;
  uint32_t mode = 0644;  // permission and set-id bits only
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // regular files only
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  std::string link_name;  // symlink target, or the hard link's entry name
  std::string user_name;
  std::string group_name;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::map<std::string, std::string> xattrs;
  bool operator==(const Header&) const = default;
};

// The bytes that precede an entry's content: a PAX header when needed, then the ustar header.
std::string encode_header(const Header& header);
// Zero bytes that pad `size` bytes of content to a whole block.
std::string padding_for(uint64_t size);
// The two zero blocks that end an archive.
std::string end_of_archive();

// Reads an archive from `source` (returns bytes read into the buffer, 0 at the end of input). Errors are
// kInvalidArgument "archive/tar: ..." for malformed input, or the source's own.
class Reader {
 public:
  using Source = std::function<Result<size_t>(char* buffer, size_t size)>;
  explicit Reader(Source source) : source_(std::move(source)) {}

  // The next entry's header (its content must then be read or skipped), or nullopt at the end.
  Result<std::optional<Header>> next();
  // Up to `size` bytes of the current entry's content; 0 once it is all read.
  Result<size_t> read(char* buffer, size_t size);

 private:
  Result<bool> read_exact(char* buffer, size_t size);  // false: clean end of input before any byte
  Result<void> skip_rest();
  Result<std::string> read_payload(uint64_t size);

  Source source_;
  uint64_t remaining_ = 0;  // content bytes of the current entry not yet read
  uint64_t padding_ = 0;    // then this many padding bytes
  bool ended_ = false;
};

// Go's os.FileMode bits for a stat mode (what dockerd's X-Docker-Container-Path-Stat carries).
uint32_t go_file_mode(uint32_t st_mode);

}  // namespace kiln::tar

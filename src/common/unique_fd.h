// UniqueFd: sole owner of one file descriptor; closes it on destruction. Move-only.
// Also the few fd helpers everyone needs (pipes, full reads/writes that survive EINTR and short I/O).
// Not thread-safe per object; distinct objects may be used from distinct threads.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "common/error.h"

namespace kiln {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }
  // Closes the held fd (if any) and takes `fd`.
  void reset(int fd = -1);

  // A second, independently owned descriptor for the same open file (F_DUPFD_CLOEXEC).
  Result<UniqueFd> duplicate() const;

 private:
  int fd_ = -1;
};

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

// Both ends close-on-exec.
Result<Pipe> make_pipe();
// AF_UNIX SOCK_STREAM pair, both ends close-on-exec.
Result<std::pair<UniqueFd, UniqueFd>> make_socket_pair();

// Writes every byte or fails (retries EINTR and short writes; blocks on a blocking fd). On a socket it uses
// send(MSG_NOSIGNAL): a vanished peer is an EPIPE error, not a SIGPIPE.
Result<void> write_all(int fd, std::string_view data);
// Reads until EOF. Fails if more than `limit` bytes arrive.
Result<std::string> read_to_end(int fd, size_t limit = size_t{1} << 30);
// Reads exactly data.size() bytes; a premature EOF is an kUnavailable error.
Result<void> read_exact(int fd, std::span<char> data);

Result<void> set_nonblocking(int fd, bool nonblocking = true);

// Whole-file helpers.
Result<std::string> read_file(const std::string& path, size_t limit = size_t{1} << 30);
// Writes to PATH.tmp.XXXX, fsyncs and renames over `path`, so readers see the old or the new file, never
// half.
Result<void> write_file_atomic(const std::string& path, std::string_view contents, int mode = 0644);

}  // namespace kiln

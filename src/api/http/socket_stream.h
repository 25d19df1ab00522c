// SocketStream: blocking-style I/O on a connected socket with an absolute deadline and a cancel fd, shaped
// as a Beast SyncReadStream/SyncWriteStream so Beast's parsers can read from it. Internal to src/api/http
// (server connections and the client); include only from .cc files. One thread per object.
//
// Why not an Asio socket: Asio's synchronous operations have no timeouts, and a stopping server must be
// able to interrupt a read. Every wait here is a poll() on the socket plus `cancel_fd`, bounded by the
// deadline; the I/O itself uses MSG_DONTWAIT|MSG_NOSIGNAL so the fd's own blocking mode does not matter
// and a vanished peer never raises SIGPIPE.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <optional>
#include <string_view>

#include "common/error.h"

namespace kiln::api::http::detail {

using Clock = std::chrono::steady_clock;

class SocketStream {
 public:
  // Neither fd is owned. `cancel_fd` (-1 for none) becoming readable fails every wait with operation_aborted.
  SocketStream(int fd, int cancel_fd) : fd_(fd), cancel_fd_(cancel_fd) {}

  void set_deadline(std::optional<Clock::time_point> deadline) { deadline_ = deadline; }
  int fd() const { return fd_; }

  // Errors: asio::error::eof at end of stream, timed_out past the deadline, operation_aborted on cancel.
  size_t read_raw(void* data, size_t size, boost::system::error_code& ec);
  size_t write_raw(const void* data, size_t size, boost::system::error_code& ec);
  // All of `data`, or an Error (kUnavailable when the peer went away, kTimeout, kCancelled).
  Result<void> write_all(std::string_view data);

  // Beast stream concepts: move the first non-empty buffer of the sequence (short I/O is allowed).
  template <class Buffers>
  size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer buffer = *it;
      if (buffer.size() > 0) return read_raw(buffer.data(), buffer.size(), ec);
    }
    ec = {};
    return 0;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer buffer = *it;
      if (buffer.size() > 0) return write_raw(buffer.data(), buffer.size(), ec);
    }
    ec = {};
    return 0;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);  // never used by Kiln: Beast's concept check wants it
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  // Waits for `events` on fd_; false with `ec` set on deadline, cancel or poll failure.
  bool wait(short events, boost::system::error_code& ec);

  int fd_;
  int cancel_fd_;
  std::optional<Clock::time_point> deadline_;
};

// True when the peer of `fd` has closed (or reset) its side: poll with zero timeout for RDHUP/HUP/ERR.
bool peer_gone(int fd);

}  // namespace kiln::api::http::detail

// The local terminal for `-t` sessions: raw mode while a remote tty owns the screen, restored on every
// exit path (RAII), and its window size.
#pragma once

#include <termios.h>

#include <optional>

#include "agent/protocol/messages.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::cli {

class RawTerminal {
 public:
  // Puts `fd` into raw mode if it is a terminal; otherwise does nothing.
  static Result<RawTerminal> enter(int fd);
  RawTerminal(RawTerminal&& other) noexcept : fd_(other.fd_), saved_(other.saved_) { other.saved_.reset(); }
  RawTerminal& operator=(RawTerminal&&) = delete;
  RawTerminal(const RawTerminal&) = delete;
  ~RawTerminal();

 private:
  RawTerminal(int fd, std::optional<termios> saved) : fd_(fd), saved_(saved) {}
  int fd_;
  std::optional<termios> saved_;
};

// The window size of terminal `fd`, or nullopt if it is not a terminal.
std::optional<agent::TtySize> terminal_size(int fd);

// Blocks the signals a remote command should get instead of `kiln` (INT, TERM, HUP, QUIT) and SIGWINCH,
// and returns a signalfd that reads them. Children get a clean mask at exec (ChildProcess).
Result<UniqueFd> block_forwarded_signals();

}  // namespace kiln::cli

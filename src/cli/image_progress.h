// Progress output for `kiln image` commands: per-layer bars redrawn in place on a terminal, one plain line
// per state change otherwise (logs, CI). Thread-safe: the store reports from download threads.
#pragma once

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "image/progress.h"

namespace kiln::cli {

class TerminalProgress final : public image::ProgressListener {
 public:
  // `interactive`: draw bars with ANSI cursor movement (stdout is a terminal).
  TerminalProgress(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}
  void on_progress(const image::ProgressEvent& event) override;
  void on_message(std::string_view text) override;

 private:
  struct Line {
    std::string id;
    image::ProgressState state;
    uint64_t current;
    uint64_t total;
  };
  std::string render(const Line& line) const;
  void redraw();

  std::FILE* out_;
  bool interactive_;
  std::mutex mutex_;
  std::vector<Line> lines_;
  size_t drawn_ = 0;  // lines currently on screen below the cursor's anchor
  std::chrono::steady_clock::time_point last_draw_{};
};

std::string human_size(uint64_t bytes);

}  // namespace kiln::cli

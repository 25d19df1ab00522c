#include "cli/image_progress.h"

#include <fmt/core.h>

#include <algorithm>

namespace kiln::cli {

std::string human_size(uint64_t bytes) {
  constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1000 && unit + 1 < std::size(kUnits)) {
    value /= 1000;
    ++unit;
  }
  return unit == 0 ? fmt::format("{}B", bytes) : fmt::format("{:.3g}{}", value, kUnits[unit]);
}

std::string TerminalProgress::render(const Line& line) const {
  std::string text = fmt::format("{}: {}", line.id, image::to_string(line.state));
  bool transferring =
      line.state == image::ProgressState::kDownloading || line.state == image::ProgressState::kUploading;
  if (transferring && line.total > 0) {
    constexpr int kWidth = 40;
    int filled = static_cast<int>(std::min<uint64_t>(kWidth, line.current * kWidth / line.total));
    text += fmt::format(" [{}{}{}] {}/{}", std::string(std::max(filled - 1, 0), '='), filled > 0 ? ">" : "",
                        std::string(kWidth - filled, ' '), human_size(line.current), human_size(line.total));
  }
  return text;
}

void TerminalProgress::redraw() {
  if (drawn_ > 0) fmt::print(out_, "\x1b[{}A", drawn_);
  for (const Line& line : lines_) fmt::print(out_, "\x1b[2K{}\n", render(line));
  drawn_ = lines_.size();
  (void)std::fflush(out_);
  last_draw_ = std::chrono::steady_clock::now();
}

void TerminalProgress::on_progress(const image::ProgressEvent& event) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(lines_.begin(), lines_.end(), [&](const Line& line) { return line.id == event.id; });
  bool changed = it == lines_.end() || it->state != event.state;
  if (it == lines_.end()) {
    lines_.push_back({event.id, event.state, event.current, event.total});
    it = lines_.end() - 1;
  } else {
    *it = {event.id, event.state, event.current, event.total};
  }
  if (!interactive_) {
    // Plain output: one line per state change, never per chunk.
    if (changed) fmt::print(out_, "{}\n", render({it->id, it->state, 0, 0}));
    (void)std::fflush(out_);
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (changed || now - last_draw_ > std::chrono::milliseconds(100)) redraw();
}

void TerminalProgress::on_message(std::string_view text) {
  std::lock_guard lock(mutex_);
  fmt::print(out_, "{}\n", text);
  // The message scrolled the bars: start a fresh block below it.
  lines_.clear();
  drawn_ = 0;
  (void)std::fflush(out_);
}

}  // namespace kiln::cli

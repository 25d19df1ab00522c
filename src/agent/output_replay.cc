#include "agent/output_replay.h"

#include <algorithm>

namespace kiln::agent {

void OutputReplay::record(std::string_view bytes) {
  end_ += bytes.size();
  if (bytes.size() >= kKeptBytes) {
    kept_.assign(bytes.substr(bytes.size() - kKeptBytes));
    return;
  }
  size_t overflow = kept_.size() + bytes.size() > kKeptBytes ? kept_.size() + bytes.size() - kKeptBytes : 0;
  if (overflow > 0) kept_.erase(0, overflow);
  kept_.append(bytes);
}

std::string_view OutputReplay::since(uint64_t offset) const {
  uint64_t start = end_ - kept_.size();
  if (offset >= end_) return {};
  offset = std::max(offset, start);
  return std::string_view(kept_).substr(static_cast<size_t>(offset - start));
}

}  // namespace kiln::agent

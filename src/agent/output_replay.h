// OutputReplay: the last bytes a kept process (keep_on_disconnect) wrote to one output stream, by absolute
// offset since it started. A host that takes the process over after the previous one died says how much it
// durably kept; what followed, including bytes that were in flight to the dead host, is sent again from here.
// Agent thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agent/protocol/flow_control.h"

namespace kiln::agent {

class OutputReplay {
 public:
  // As much as one flow-control window: at most that much can be in flight to a host.
  static constexpr size_t kKeptBytes = kInitialWindow;

  void record(std::string_view bytes);
  // Offset just past the last byte written.
  uint64_t end() const { return end_; }
  // The bytes from `offset` to the end, or from the oldest one kept when `offset` is older than that.
  std::string_view since(uint64_t offset) const;

 private:
  std::string kept_;  // the last kept_.size() bytes, ending at end_
  uint64_t end_ = 0;
};

}  // namespace kiln::agent

// Progress reporting for long image operations (pull, push, load, rootfs builds). The store reports; the
// CLI draws bars or prints lines; a daemon will turn the same events into API stream messages.
// Events arrive from worker threads: implementations must be thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::image {

enum class ProgressState {
  kWaiting,        // queued behind other layers
  kDownloading,    // current/total bytes
  kVerifying,      // digest check after download
  kDownloaded,     // blob committed to the store
  kAlreadyExists,  // blob was in the store already: no transfer
  kUploading,      // current/total bytes
  kMounted,        // cross-repository mount: no transfer
  kPushed,         // blob is in the registry
  kExtracting,     // applying a layer to a rootfs
  kDone,
};

std::string_view to_string(ProgressState state);
// The inverse, for clients reading progress back from a JSON stream; nullopt for any other text.
std::optional<ProgressState> progress_state_from_string(std::string_view text);

struct ProgressEvent {
  std::string id;  // short layer ID (12 hex) or another short label
  ProgressState state = ProgressState::kWaiting;
  uint64_t current = 0;
  uint64_t total = 0;  // 0 when unknown
};

class ProgressListener {
 public:
  virtual ~ProgressListener() = default;
  virtual void on_progress(const ProgressEvent& event) = 0;
  // A status line not tied to a layer ("Digest: sha256:...").
  virtual void on_message(std::string_view text) = 0;
  // True once whoever watches has gone away (a client hung up on a pull): downloads stop at their next
  // chunk with kCancelled, as dockerd's do. Nothing half-written stays behind.
  virtual bool cancelled() const { return false; }
};

// Discards everything; for callers that do not care.
class NullProgress final : public ProgressListener {
 public:
  void on_progress(const ProgressEvent&) override {}
  void on_message(std::string_view) override {}
};

}  // namespace kiln::image

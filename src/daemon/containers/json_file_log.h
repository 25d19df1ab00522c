// Docker's json-file log driver: a container's stdout and stderr as one JSON object per line in
// <container dir>/<id>-json.log, rotated to .1, .2, ... by max-size/max-file, and read back for `docker logs`
// (tail, since, until, follow). One JsonFileLogWriter per running container, owned by whoever relays its
// output; any thread may write, close or read (one mutex inside). Readers need no writer: a stopped
// container's log is read from the files alone.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::daemon::containers {

enum class LogStream { kStdout, kStderr };
std::string_view to_string(LogStream stream);  // "stdout", "stderr": the file's "stream" values

// The log-opts json-file takes (HostConfig.LogConfig.Config). dockerd's names and defaults.
struct JsonFileLogOptions {
  std::optional<int64_t> max_size;  // bytes; nullopt: never rotate
  int max_file = 1;                 // files kept, the live one included; without max_size it changes nothing
  // Accepted and checked as dockerd does, but rotated files are kept uncompressed: readers see the same
  // entries either way, only disk use differs.
  bool compress = false;
};

// dockerd's checks and words: `unknown log opt 'foo' for json-file log driver`, `invalid size: '-1'`,
// `max-size must be a positive number`, `max-file cannot be less than 1`, ... (all kInvalidArgument).
// The common opts tag, labels, labels-regex, env and env-regex are accepted and ignored.
Result<JsonFileLogOptions> parse_json_file_log_options(const std::map<std::string, std::string>& log_opts);
// The same, for the create path: refuse a bad LogConfig before anything is made.
Result<void> validate_json_file_options(const std::map<std::string, std::string>& log_opts);

// Writes one container's output. Bytes arrive in arbitrary chunks per stream; like dockerd's log copier,
// an entry is written when its '\n' arrives, a line is cut into 16 KiB pieces without '\n' (the pieces
// share the first one's time), and close() writes any unfinished line without '\n'.
class JsonFileLogWriter {
 public:
  // dockerd's line buffer: longer lines are split into entries of this many bytes.
  static constexpr size_t kMaxLineBytes = 16 * 1024;

  // Opens `path` for append (created 0640), keeping what an earlier run of the container wrote.
  static Result<std::unique_ptr<JsonFileLogWriter>> create(std::string path, JsonFileLogOptions options);
  ~JsonFileLogWriter();
  JsonFileLogWriter(const JsonFileLogWriter&) = delete;
  JsonFileLogWriter& operator=(const JsonFileLogWriter&) = delete;

  // `time` stamps the lines this chunk completes (dockerd stamps a line when its end is read).
  // kFailedPrecondition after close(). On an I/O error the entries that failed are lost (the first error is
  // returned); the rest of the chunk is still written.
  Result<void> write(LogStream stream, std::string_view bytes,
                     std::chrono::system_clock::time_point time = std::chrono::system_clock::now());
  // Writes unfinished lines, closes the file and ends every follower once it has read the rest.
  // Idempotent; the destructor calls it.
  Result<void> close();

  const std::string& path() const { return path_; }

 private:
  friend class JsonFileLogFollower;  // read_json_file_log's view of the live file (json_file_log.cc)

  struct PendingLine {
    std::string bytes;  // the unfinished line, under kMaxLineBytes
    // Set once a piece of this line was written: the rest of the line carries the same time.
    std::optional<std::chrono::system_clock::time_point> first_piece_time;
  };

  JsonFileLogWriter(std::string path, JsonFileLogOptions options, UniqueFd file, uint64_t size);
  Result<void> append_entry_locked(LogStream stream, std::string_view text,
                                   std::chrono::system_clock::time_point time);
  Result<void> rotate_locked();
  Result<void> flush_pending_locked(LogStream stream, std::chrono::system_clock::time_point time);

  const std::string path_;
  const JsonFileLogOptions options_;

  mutable std::mutex mutex_;
  // Signalled after each write that added entries, and on close; followers wait on it.
  mutable std::condition_variable changed_;
  UniqueFd file_;            // the live file at path_
  uint64_t size_;            // bytes in the live file; always at an entry boundary
  uint64_t generation_ = 0;  // bumped whenever entries are added
  uint64_t rotations_ = 0;   // how often the live file was moved away (to .1 or unlinked)
  bool closed_ = false;
  std::array<PendingLine, 2> pending_;  // by LogStream
};

struct LogReadOptions {
  bool show_stdout = true;
  bool show_stderr = true;
  // dockerd's since: entries before it are skipped until the first one at or after it; later entries all
  // pass (timestamps need not be monotonic). until: reading stops at the first entry after it.
  std::optional<std::chrono::system_clock::time_point> since;
  std::optional<std::chrono::system_clock::time_point> until;
  // The last N entries across the rotated files, counted over both streams before the stream filter (as
  // dockerd counts). nullopt: all.
  std::optional<uint64_t> tail;
  // Keep reading what the live writer adds until it closes or should_stop() says so.
  bool follow = false;
};

struct LogEntry {
  LogStream stream;
  std::string text;       // as written, with the '\n' unless a cut or unfinished line
  std::string time_text;  // as in the file (RFC 3339, nanoseconds)
  std::chrono::system_clock::time_point time;
};

// Delivers the entries of the log at `path` (rotated files first, oldest first) to `deliver`, which returns
// false to stop. `live` is the writer of `path` while the container's log is open, else null (then follow
// ends at the end of the files, as dockerd's does for a stopped container). Following survives rotation; it
// wakes on the writer's signal and checks should_stop() at least every 100 ms. A corrupt line (a crash cut it
// short) is skipped. A missing log is an empty one.
Result<void> read_json_file_log(const std::string& path, const LogReadOptions& options,
                                const std::shared_ptr<const JsonFileLogWriter>& live,
                                const std::function<bool()>& should_stop,
                                const std::function<bool(const LogEntry&)>& deliver);

}  // namespace kiln::daemon::containers

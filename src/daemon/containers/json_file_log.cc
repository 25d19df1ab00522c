#include "daemon/containers/json_file_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <vector>

#include "common/json.h"
#include "common/rfc3339.h"
#include "common/units.h"

namespace kiln::daemon::containers {

using Clock = std::chrono::system_clock;

std::string_view to_string(LogStream stream) {
  return stream == LogStream::kStdout ? "stdout" : "stderr";
}

// ---- Options: dockerd's jsonfilelog.New and ValidateLogOpt, in their words ----

namespace {

// Go's strconv.Atoi, whose messages dockerd passes through for max-file.
Result<int> go_atoi(const std::string& text) {
  std::string_view digits = text;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int64_t value = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  bool all_digits = !digits.empty() && end == digits.data() + digits.size() &&
                    std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!all_digits && error != std::errc::result_out_of_range) {
    return Error::invalid_argument(fmt::format("strconv.Atoi: parsing \"{}\": invalid syntax", text));
  }
  if (error == std::errc::result_out_of_range || value > INT32_MAX) {
    return Error::invalid_argument(fmt::format("strconv.Atoi: parsing \"{}\": value out of range", text));
  }
  return static_cast<int>(negative ? -value : value);
}

// Go's strconv.ParseBool, for compress.
Result<bool> go_parse_bool(const std::string& text) {
  for (std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (text == yes) return true;
  }
  for (std::string_view no : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (text == no) return false;
  }
  return Error::invalid_argument(fmt::format("strconv.ParseBool: parsing \"{}\": invalid syntax", text));
}

}  // namespace

Result<JsonFileLogOptions> parse_json_file_log_options(const std::map<std::string, std::string>& log_opts) {
  for (const auto& [key, value] : log_opts) {
    static constexpr std::string_view kKnown[] = {"max-file",  "max-size", "compress",     "env",
                                                  "env-regex", "labels",   "labels-regex", "tag"};
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return Error::invalid_argument(fmt::format("unknown log opt '{}' for json-file log driver", key));
    }
  }
  JsonFileLogOptions options;
  if (auto it = log_opts.find("max-size"); it != log_opts.end()) {
    int64_t bytes = KILN_TRY(parse_docker_size(it->second));
    if (bytes <= 0) return Error::invalid_argument("max-size must be a positive number");
    options.max_size = bytes;
  }
  if (auto it = log_opts.find("max-file"); it != log_opts.end()) {
    options.max_file = KILN_TRY(go_atoi(it->second));
    if (options.max_file < 1) return Error::invalid_argument("max-file cannot be less than 1");
  }
  if (auto it = log_opts.find("compress"); it != log_opts.end()) {
    options.compress = KILN_TRY(go_parse_bool(it->second));
    if (options.compress && (options.max_file == 1 || !options.max_size)) {
      return Error::invalid_argument(
          "compress cannot be true when max-file is less than 2 or max-size is not set");
    }
  }
  return options;
}

Result<void> validate_json_file_options(const std::map<std::string, std::string>& log_opts) {
  KILN_TRY(parse_json_file_log_options(log_opts));
  return ok();
}

// ---- Writer ----

namespace {

std::string rotated_path(const std::string& path, int index) {
  return fmt::format("{}.{}", path, index);
}

Result<void> remove_if_present(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::last_os_error("unlink " + path);
  return ok();
}

Result<void> rename_if_present(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
    return Error::last_os_error(fmt::format("rename {} to {}", from, to));
  }
  return ok();
}

Result<UniqueFd> open_for_append(const std::string& path, int extra_flags) {
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | extra_flags, 0640));
  if (!file) return Error::last_os_error("open " + path);
  return file;
}

// One line of the file. nlohmann orders keys as dockerd writes them (log, stream, time); bytes that are
// not UTF-8 become U+FFFD, as Go's encoder does, so the file stays valid JSON.
std::string encode_entry(LogStream stream, std::string_view text, Clock::time_point time) {
  Json entry = {{"log", text},
                {"stream", to_string(stream)},
                {"time", format_rfc3339(time, TimePrecision::kNanosTrimmed)}};
  return entry.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace

Result<std::unique_ptr<JsonFileLogWriter>> JsonFileLogWriter::create(std::string path,
                                                                     JsonFileLogOptions options) {
  UniqueFd file = KILN_TRY(open_for_append(path, 0));
  struct stat status {};
  if (::fstat(file.get(), &status) != 0) return Error::last_os_error("stat " + path);
  return std::unique_ptr<JsonFileLogWriter>(  // NOLINT: private constructor
      new JsonFileLogWriter(std::move(path), options, std::move(file),
                            static_cast<uint64_t>(status.st_size)));
}

JsonFileLogWriter::JsonFileLogWriter(std::string path, JsonFileLogOptions options, UniqueFd file,
                                     uint64_t size)
    : path_(std::move(path)), options_(options), file_(std::move(file)), size_(size) {}

JsonFileLogWriter::~JsonFileLogWriter() {
  (void)close();  // nobody to tell: the relay that owned us is gone
}

Result<void> JsonFileLogWriter::write(LogStream stream, std::string_view bytes, Clock::time_point time) {
  std::lock_guard lock(mutex_);
  if (closed_) return Error::failed_precondition(fmt::format("log {} is closed", path_));
  PendingLine& pending = pending_[static_cast<size_t>(stream)];
  uint64_t generation_before = generation_;
  // An entry that fails to be written is lost, but the rest of the chunk is still tried: the relay must
  // go on whatever happens to one write.
  Result<void> result = ok();
  auto keep_first_error = [&](Result<void> entry_result) {
    if (result && !entry_result) result = std::move(entry_result);
  };
  // Fill the line buffer up to kMaxLineBytes at a time, as dockerd's copier does with its 16 KiB buffer: a
  // '\n' inside the room ends the line; a full buffer without one is written as a piece.
  while (!bytes.empty()) {
    size_t room = kMaxLineBytes - pending.bytes.size();
    size_t newline = bytes.substr(0, room).find('\n');
    if (newline != std::string_view::npos) {
      pending.bytes.append(bytes.substr(0, newline + 1));
      bytes.remove_prefix(newline + 1);
      keep_first_error(append_entry_locked(stream, pending.bytes, pending.first_piece_time.value_or(time)));
      pending = {};
      continue;
    }
    size_t taken = std::min(room, bytes.size());
    pending.bytes.append(bytes.substr(0, taken));
    bytes.remove_prefix(taken);
    if (pending.bytes.size() == kMaxLineBytes) {
      Clock::time_point piece_time = pending.first_piece_time.value_or(time);
      keep_first_error(append_entry_locked(stream, pending.bytes, piece_time));
      pending.bytes.clear();
      pending.first_piece_time = piece_time;
    }
  }
  if (generation_ != generation_before) changed_.notify_all();
  return result;
}

Result<void> JsonFileLogWriter::close() {
  std::lock_guard lock(mutex_);
  if (closed_) return ok();
  Clock::time_point now = Clock::now();
  Result<void> result = flush_pending_locked(LogStream::kStdout, now);
  Result<void> stderr_result = flush_pending_locked(LogStream::kStderr, now);
  if (result) result = std::move(stderr_result);
  closed_ = true;
  file_.reset();
  changed_.notify_all();
  return result;
}

Result<void> JsonFileLogWriter::flush_pending_locked(LogStream stream, Clock::time_point time) {
  PendingLine& pending = pending_[static_cast<size_t>(stream)];
  if (pending.bytes.empty()) return ok();
  Result<void> result = append_entry_locked(stream, pending.bytes, pending.first_piece_time.value_or(time));
  pending = {};
  return result;
}

Result<void> JsonFileLogWriter::append_entry_locked(LogStream stream, std::string_view text,
                                                    Clock::time_point time) {
  // dockerd rotates before the entry that would start past max-size, so a file may end up to one entry
  // over the limit.
  if (options_.max_size && size_ >= static_cast<uint64_t>(*options_.max_size)) KILN_TRY(rotate_locked());
  std::string line = encode_entry(stream, text, time);
  KILN_TRY_CONTEXT(write_all(file_.get(), line), "write " + path_);
  size_ += line.size();
  ++generation_;
  return ok();
}

Result<void> JsonFileLogWriter::rotate_locked() {
  // Followers may still be reading the live file, so it is moved away (or unlinked), never truncated:
  // their descriptor keeps the old content (loggerutils.LogFile.rotate).
  if (options_.max_file >= 2) {
    KILN_TRY(remove_if_present(rotated_path(path_, options_.max_file - 1)));
    for (int index = options_.max_file - 1; index > 1; --index) {
      KILN_TRY(rename_if_present(rotated_path(path_, index - 1), rotated_path(path_, index)));
    }
    KILN_TRY(rename_if_present(path_, rotated_path(path_, 1)));
  } else {
    KILN_TRY(remove_if_present(path_));
  }
  file_ = KILN_TRY(open_for_append(path_, O_TRUNC));
  size_ = 0;
  ++rotations_;
  return ok();
}

// ---- Reader ----

namespace {

// A log file opened for reading, consumed line by line from `offset`. Bytes after the last '\n' wait in
// `fragment` for the rest of their line (the writer may be mid-write).
struct LogFileCursor {
  UniqueFd file;
  uint64_t offset = 0;
  std::string fragment;
};

enum class Flow { kContinue, kStop };

// Reads complete lines from the cursor up to `end` (or end of file) and hands each to `on_line`.
Result<Flow> read_lines(LogFileCursor& cursor, uint64_t end,
                        const std::function<Flow(std::string_view)>& on_line) {
  std::string block(64 * 1024, '\0');
  while (cursor.offset < end) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(block.size(), end - cursor.offset));
    ssize_t got = ::pread(cursor.file.get(), block.data(), want, static_cast<off_t>(cursor.offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Error::last_os_error("read log file");
    if (got == 0) break;
    cursor.offset += static_cast<uint64_t>(got);
    std::string_view data(block.data(), static_cast<size_t>(got));
    for (size_t newline = data.find('\n'); newline != std::string_view::npos; newline = data.find('\n')) {
      Flow flow;
      if (cursor.fragment.empty()) {
        flow = on_line(data.substr(0, newline));
      } else {
        cursor.fragment.append(data.substr(0, newline));
        flow = on_line(cursor.fragment);
        cursor.fragment.clear();
      }
      data.remove_prefix(newline + 1);
      if (flow == Flow::kStop) return Flow::kStop;
    }
    cursor.fragment.append(data);
  }
  return Flow::kContinue;
}

Result<uint64_t> file_size(int fd) {
  struct stat status {};
  if (::fstat(fd, &status) != 0) return Error::last_os_error("stat log file");
  return static_cast<uint64_t>(status.st_size);
}

// The offset in [0, end) where the last `wanted` lines start, scanning backwards; 0 when the file holds
// fewer, after taking from `wanted` the lines it does hold (the rest come from older files).
Result<uint64_t> tail_start(int fd, uint64_t end, uint64_t& wanted) {
  std::string block(64 * 1024, '\0');
  uint64_t newlines = 0;
  for (uint64_t position = end; position > 0 && wanted > 0;) {
    size_t length = static_cast<size_t>(std::min<uint64_t>(block.size(), position));
    uint64_t start = position - length;
    ssize_t got = ::pread(fd, block.data(), length, static_cast<off_t>(start));
    if (got < 0 && errno == EINTR) continue;
    if (got != static_cast<ssize_t>(length)) return Error::last_os_error("read log file");
    for (size_t i = length; i-- > 0;) {
      // The file's last byte ends its last line; every other '\n' ends a line before a counted one.
      if (block[i] != '\n' || start + i == end - 1) continue;
      if (++newlines == wanted) {
        wanted = 0;
        return start + i + 1;
      }
    }
    position = start;
  }
  if (end > 0) wanted -= std::min(wanted, newlines + 1);
  return 0;
}

// since/until/stream filtering and delivery: dockerd's forwarder, then its stream filter.
class EntrySink {
 public:
  EntrySink(const LogReadOptions& options, const std::function<bool(const LogEntry&)>& deliver)
      : options_(options), since_(options.since), deliver_(deliver) {}

  Flow on_line(std::string_view line) {
    auto entry = decode(line);
    if (!entry) return Flow::kContinue;  // corrupt: a crash cut it, or not ours
    if (since_) {
      if (entry->time < *since_) return Flow::kContinue;
      since_.reset();  // later entries pass even if their clock stepped back
    }
    if (options_.until && entry->time > *options_.until) return Flow::kStop;
    bool wanted = entry->stream == LogStream::kStdout ? options_.show_stdout : options_.show_stderr;
    if (wanted && !deliver_(*entry)) return Flow::kStop;
    return Flow::kContinue;
  }

 private:
  static std::optional<LogEntry> decode(std::string_view line) {
    auto json = parse_json(line);
    if (!json || !json->is_object()) return std::nullopt;
    auto text = optional_string(*json, "log");  // dockerd omits an empty "log"
    auto stream = optional_string(*json, "stream");
    auto time_text = optional_string(*json, "time");
    if (!text || !stream || !time_text || !*stream || !*time_text) return std::nullopt;
    auto time = parse_rfc3339_time(**time_text);
    if (!time) return std::nullopt;
    LogEntry entry{LogStream::kStdout, text->value_or(""), std::move(**time_text), *time};
    if (**stream == "stderr") {
      entry.stream = LogStream::kStderr;
    } else if (**stream != "stdout") {
      return std::nullopt;
    }
    return entry;
  }

  const LogReadOptions& options_;
  std::optional<Clock::time_point> since_;
  const std::function<bool(const LogEntry&)>& deliver_;
};

// The files of a log at one moment, oldest first; the last is the live one. `end` bounds what the
// first pass reads, so a busy log still ends.
struct LogSnapshot {
  struct File {
    LogFileCursor cursor;
    uint64_t end;
  };
  std::vector<File> files;
  uint64_t rotations = 0;  // the writer's count when the live file was opened
};

// Opens `path` for reading; nullopt if it does not exist.
Result<std::optional<UniqueFd>> open_if_present(const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file) return std::optional<UniqueFd>(std::move(file));
  if (errno == ENOENT) return std::optional<UniqueFd>();
  return Error::last_os_error("open " + path);
}

// Appends path.<highest>, ..., path.<lowest> (those that exist): older rotated files have higher numbers.
Result<void> open_rotated(const std::string& path, int highest, int lowest,
                          std::vector<LogSnapshot::File>& out) {
  for (int index = highest; index >= lowest; --index) {
    auto file = KILN_TRY(open_if_present(rotated_path(path, index)));
    if (!file) continue;
    uint64_t end = KILN_TRY(file_size(file->get()));
    out.push_back({LogFileCursor{std::move(*file)}, end});
  }
  return ok();
}

// A closed log: whatever rotated files are there (no writer says how many to expect).
Result<LogSnapshot> snapshot_closed_log(const std::string& path) {
  constexpr int kMostRotatedFiles = 10000;  // far past any max-file anyone uses
  int highest = 0;
  while (highest < kMostRotatedFiles && ::access(rotated_path(path, highest + 1).c_str(), F_OK) == 0)
    ++highest;
  LogSnapshot snapshot;
  KILN_TRY(open_rotated(path, highest, 1, snapshot.files));
  auto live = KILN_TRY(open_if_present(path));
  if (live) {
    uint64_t end = KILN_TRY(file_size(live->get()));
    snapshot.files.push_back({LogFileCursor{std::move(*live)}, end});
  }
  return snapshot;
}

}  // namespace

// read_json_file_log's access to a live writer's files and signals (a friend: the writer's lock must be
// held while the set of files is opened, so no rotation falls between two opens).
class JsonFileLogFollower {
 public:
  struct State {
    uint64_t generation;
    uint64_t rotations;
    bool closed;
  };

  static Result<LogSnapshot> snapshot(const JsonFileLogWriter& writer) {
    std::lock_guard lock(writer.mutex_);
    LogSnapshot snapshot;
    KILN_TRY(open_rotated(writer.path_, writer.options_.max_file - 1, 1, snapshot.files));
    auto live = KILN_TRY(open_if_present(writer.path_));
    if (!live) return Error::not_found(fmt::format("log {} was removed", writer.path_));
    snapshot.files.push_back({LogFileCursor{std::move(*live)}, writer.size_});
    snapshot.rotations = writer.rotations_;
    return snapshot;
  }

  // After rotations since `rotations`: the files written since the one the reader holds, oldest first,
  // the new live file last. With max-file 1 the moved-away files are gone, as under dockerd.
  static Result<LogSnapshot> files_after_rotation(const JsonFileLogWriter& writer, uint64_t rotations) {
    std::lock_guard lock(writer.mutex_);
    LogSnapshot snapshot;
    // Files written and moved away since the one the reader holds.
    uint64_t missed = writer.rotations_ > rotations ? writer.rotations_ - rotations - 1 : 0;
    int highest =
        static_cast<int>(std::min<uint64_t>(missed, static_cast<uint64_t>(writer.options_.max_file - 1)));
    KILN_TRY(open_rotated(writer.path_, highest, 1, snapshot.files));
    auto live = KILN_TRY(open_if_present(writer.path_));
    if (!live) return Error::not_found(fmt::format("log {} was removed", writer.path_));
    snapshot.files.push_back({LogFileCursor{std::move(*live)}, UINT64_MAX});
    snapshot.rotations = writer.rotations_;
    return snapshot;
  }

  static State state(const JsonFileLogWriter& writer) {
    std::lock_guard lock(writer.mutex_);
    return {writer.generation_, writer.rotations_, writer.closed_};
  }

  static void wait_for_change(const JsonFileLogWriter& writer, uint64_t generation,
                              std::chrono::milliseconds timeout) {
    std::unique_lock lock(writer.mutex_);
    writer.changed_.wait_for(lock, timeout,
                             [&] { return writer.closed_ || writer.generation_ != generation; });
  }
};

namespace {

// Follows the live file after the first pass: drain, then wait for the writer's signal; on rotation the
// held file is complete, so drain it and move on to the files that replaced it.
Result<void> follow_live(const JsonFileLogWriter& writer, LogSnapshot snapshot,
                         const std::function<bool()>& should_stop, EntrySink& sink) {
  auto on_line = [&](std::string_view line) { return sink.on_line(line); };
  LogFileCursor live = std::move(snapshot.files.back().cursor);
  uint64_t rotations = snapshot.rotations;
  while (true) {
    // The state is taken before draining: whatever it reports happened before the drain.
    JsonFileLogFollower::State state = JsonFileLogFollower::state(writer);
    if (KILN_TRY(read_lines(live, UINT64_MAX, on_line)) == Flow::kStop) return ok();
    if (state.rotations != rotations) {
      LogSnapshot next = KILN_TRY(JsonFileLogFollower::files_after_rotation(writer, rotations));
      for (size_t i = 0; i + 1 < next.files.size(); ++i) {
        if (KILN_TRY(read_lines(next.files[i].cursor, next.files[i].end, on_line)) == Flow::kStop)
          return ok();
      }
      live = std::move(next.files.back().cursor);
      rotations = next.rotations;
      continue;
    }
    if (state.closed || (should_stop && should_stop())) return ok();
    JsonFileLogFollower::wait_for_change(writer, state.generation, std::chrono::milliseconds(100));
  }
}

}  // namespace

Result<void> read_json_file_log(const std::string& path, const LogReadOptions& options,
                                const std::shared_ptr<const JsonFileLogWriter>& live,
                                const std::function<bool()>& should_stop,
                                const std::function<bool(const LogEntry&)>& deliver) {
  LogSnapshot snapshot =
      live ? KILN_TRY(JsonFileLogFollower::snapshot(*live)) : KILN_TRY(snapshot_closed_log(path));
  auto& files = snapshot.files;

  // tail: find where the last N lines start, newest file backwards; older files are skipped.
  size_t first = 0;
  if (options.tail) {
    uint64_t wanted = *options.tail;
    first = files.size();
    while (first > 0 && wanted > 0) {
      --first;
      files[first].cursor.offset =
          KILN_TRY(tail_start(files[first].cursor.file.get(), files[first].end, wanted));
    }
    if (wanted == 0 && first < files.size() && files[first].cursor.offset == files[first].end) ++first;
  }

  EntrySink sink(options, deliver);
  auto on_line = [&](std::string_view line) { return sink.on_line(line); };
  for (size_t i = first; i < files.size(); ++i) {
    if (KILN_TRY(read_lines(files[i].cursor, files[i].end, on_line)) == Flow::kStop) return ok();
  }
  if (!options.follow || !live || files.empty()) return ok();
  if (first == files.size()) files.back().cursor.offset = files.back().end;  // tail 0: only what comes next
  return follow_live(*live, std::move(snapshot), should_stop, sink);
}

}  // namespace kiln::daemon::containers

#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/unique_fd.h"

namespace kiln::log {
namespace {

// Process-wide logging configuration: the one sanctioned piece of global state (set once at startup).
std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
std::atomic<int> g_fd{STDERR_FILENO};
std::mutex g_write_mutex;

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  auto seconds = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[32];
  (void)std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03d}Z", buffer, millis);
}

bool needs_quotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

}  // namespace

void set_level(Level level) {
  g_level = level;
}
void set_format(Format format) {
  g_format = format;
}
void set_fd(int fd) {
  g_fd = fd;
}
Level level() {
  return g_level;
}

bool set_level_by_name(std::string_view name) {
  for (Level candidate : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (level_name(candidate) == name) {
      set_level(candidate);
      return true;
    }
  }
  return false;
}

std::string format_line(Level level, Format format, std::string_view message, Fields fields,
                        std::string_view timestamp) {
  if (format == Format::kJson) {
    nlohmann::ordered_json line;
    line["time"] = timestamp;
    line["level"] = level_name(level);
    line["msg"] = message;
    for (const auto& field : fields) line[field.key] = field.value;
    return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = fmt::format("{} {:<5} {}", timestamp, level_name(level), message);
  for (const auto& field : fields) {
    if (needs_quotes(field.value)) {
      line += fmt::format(
          " {}={}", field.key,
          nlohmann::json(field.value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      line += fmt::format(" {}={}", field.key, field.value);
    }
  }
  return line;
}

void write(Level level, std::string_view message, Fields fields) {
  if (level < g_level.load()) return;
  std::string line = format_line(level, g_format, message, fields, now_rfc3339());
  line.push_back('\n');
  std::lock_guard lock(g_write_mutex);
  // A failed log write has nowhere to be reported; dropping the line is the only option.
  (void)write_all(g_fd, line);
}

}  // namespace kiln::log

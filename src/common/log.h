// Structured logging: one line per event, a message plus key=value fields, to stderr (or a chosen fd), as
// human text or JSON lines (for kilnd under systemd or log shippers). Thread-safe: lines never interleave.
#pragma once

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace kiln::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format { kText, kJson };

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <typename T>
  requires std::is_arithmetic_v<T> Field(std::string_view k, T v) : key(k), value(fmt::to_string(v)) {}
  std::string key;
  std::string value;
};

using Fields = std::initializer_list<Field>;

void set_level(Level level);
void set_format(Format format);
void set_fd(int fd);
// "debug" | "info" | "warn" | "error"; false if unknown.
bool set_level_by_name(std::string_view name);
Level level();

void write(Level level, std::string_view message, Fields fields = {});
inline void debug(std::string_view message, Fields fields = {}) {
  write(Level::kDebug, message, fields);
}
inline void info(std::string_view message, Fields fields = {}) {
  write(Level::kInfo, message, fields);
}
inline void warn(std::string_view message, Fields fields = {}) {
  write(Level::kWarn, message, fields);
}
inline void error(std::string_view message, Fields fields = {}) {
  write(Level::kError, message, fields);
}

// The line `write` would emit (no trailing newline); exposed for tests.
std::string format_line(Level level, Format format, std::string_view message, Fields fields,
                        std::string_view timestamp);

}  // namespace kiln::log

// RFC 3339 timestamps as Kiln writes and reads them: records, logs, image configs and the Docker API all
// spell time this way. Pure functions; any thread.
#pragma once

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

// kNanosTrimmed is Go's time.RFC3339Nano, which dockerd writes (json-file logs): nanoseconds without trailing
// zeros, and no fraction at all on a whole second.
enum class TimePrecision { kSeconds, kMillis, kNanos, kNanosTrimmed };

// "2026-11-30T12:00:00Z", "...00.123Z", "...00.123456789Z" or "...00.12Z" (UTC).
std::string format_rfc3339(std::chrono::system_clock::time_point time,
                           TimePrecision precision = TimePrecision::kSeconds);
std::string now_rfc3339(TimePrecision precision = TimePrecision::kSeconds);
// "2025-01-02T03:04:05Z", with optional fractional seconds and a "Z" or "+HH:MM" zone -> unix seconds.
// nullopt for anything else.
std::optional<std::time_t> parse_rfc3339(std::string_view text);
// The same, keeping the fraction (to the nanosecond; further digits are dropped).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339_time(std::string_view text);

}  // namespace kiln

// RFC 3339 timestamps as Kiln writes and reads them: records, logs, image configs and the Docker API all
// spell time this way. Pure functions; any thread.
#pragma once

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

enum class TimePrecision { kSeconds, kMillis, kNanos };

// "2026-11-30T12:00:00Z", "...00.123Z" or "...00.123456789Z" (UTC).
std::string format_rfc3339(std::chrono::system_clock::time_point time,
                           TimePrecision precision = TimePrecision::kSeconds);
std::string now_rfc3339(TimePrecision precision = TimePrecision::kSeconds);
// "2025-01-02T03:04:05Z", with optional fractional seconds and a "Z" or "+HH:MM" zone -> unix seconds.
// nullopt for anything else.
std::optional<std::time_t> parse_rfc3339(std::string_view text);

}  // namespace kiln

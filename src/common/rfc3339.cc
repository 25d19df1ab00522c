#include "common/rfc3339.h"

#include <fmt/format.h>

#include <cstdio>

namespace kiln {

std::string format_rfc3339(std::chrono::system_clock::time_point time, TimePrecision precision) {
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
  auto seconds = static_cast<std::time_t>(nanos / 1'000'000'000);
  long fraction = static_cast<long>(nanos % 1'000'000'000);
  if (fraction < 0) {  // before 1970: floor, so the fraction stays positive
    fraction += 1'000'000'000;
    --seconds;
  }
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  std::string text = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", utc.tm_year + 1900, utc.tm_mon + 1,
                                 utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
  switch (precision) {
    case TimePrecision::kSeconds:
      break;
    case TimePrecision::kMillis:
      text += fmt::format(".{:03}", fraction / 1'000'000);
      break;
    case TimePrecision::kNanos:
      text += fmt::format(".{:09}", fraction);
      break;
    case TimePrecision::kNanosTrimmed:
      if (fraction != 0) {
        std::string digits = fmt::format("{:09}", fraction);
        digits.erase(digits.find_last_not_of('0') + 1);
        text += "." + digits;
      }
      break;
  }
  return text + "Z";
}

std::string now_rfc3339(TimePrecision precision) {
  return format_rfc3339(std::chrono::system_clock::now(), precision);
}

std::optional<std::time_t> parse_rfc3339(std::string_view text) {
  std::tm utc{};
  int consumed = 0;
  std::string copy(text);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &utc.tm_year, &utc.tm_mon,
                  &utc.tm_mday,  // NOLINT
                  &utc.tm_hour, &utc.tm_min, &utc.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(static_cast<size_t>(consumed));
  if (rest.starts_with('.')) {  // fractional seconds: image configs carry nanoseconds
    rest.remove_prefix(1);
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    if (digits == 0) return std::nullopt;
    rest.remove_prefix(digits);
  }
  long offset = 0;
  if (rest == "Z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int hours = 0;
    int minutes = 0;
    std::string zone(rest.substr(1));
    if (std::sscanf(zone.c_str(), "%2d:%2d", &hours, &minutes) != 2) return std::nullopt;  // NOLINT
    offset = (rest[0] == '+' ? 1 : -1) * (hours * 3600L + minutes * 60L);
  } else {
    return std::nullopt;
  }
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  return ::timegm(&utc) - offset;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339_time(std::string_view text) {
  auto seconds = parse_rfc3339(text);  // validates the whole text, zone included
  if (!seconds) return std::nullopt;
  long nanos = 0;
  // A text parse_rfc3339 accepts has a '.' only where the fraction starts.
  if (size_t dot = text.find('.'); dot != std::string_view::npos) {
    long scale = 100'000'000;
    for (size_t i = dot + 1; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, scale /= 10) {
      nanos += (text[i] - '0') * scale;
    }
  }
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(*seconds) +
                                                                      std::chrono::nanoseconds(nanos)));
}

}  // namespace kiln

// Parsing the numbers people and clients type: whole numbers ("8080", "?tail=100"), sizes ("512M", "1G"),
// durations ("?t=10", "500ms"). The one place Kiln turns text into a number: digits only, no sign, no
// spaces, overflow and range checked, every failure a kInvalidArgument naming the value. Pure functions.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string_view>

#include "common/error.h"

namespace kiln {

namespace detail {
Result<uint64_t> parse_unsigned_in_range(std::string_view text, std::string_view what, uint64_t min,
                                         uint64_t max);
}  // namespace detail

// A whole number in decimal digits, from `min` to `max`. "-1", "+1", " 1", "1.0", "0x10" and "" are refused,
// as is anything past `max` (overflow included). `what` names the value in the message:
// `query parameter h must be a whole number from 1 to 65535, not "-1"`.
template <std::unsigned_integral T>
Result<T> parse_unsigned(std::string_view text, std::string_view what, T min = 0,
                         T max = std::numeric_limits<T>::max()) {
  auto value = detail::parse_unsigned_in_range(text, what, min, max);
  if (!value) return value.error();
  return static_cast<T>(*value);
}

// A duration up to `max`: whole seconds ("10", as Docker's ?t= is), or a whole number with a unit: "500ms",
// "10s", "2m", "1h". Negative, fractional and unknown units are refused; `what` names the value.
Result<std::chrono::milliseconds> parse_duration(std::string_view text, std::string_view what,
                                                 std::chrono::milliseconds max);

// A size in bytes. Suffixes (case-insensitive, optional "iB"/"B"): b, k, m, g, t, all binary (1k = 1024).
// A bare number means `bare_unit` bytes each (e.g. 1 MiB for memory flags, as QEMU's -m does).
Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit = 1);

// A size as dockerd reads log-opt max-size (go-units FromHumanSize): a decimal number, fractions allowed
// ("1.5k"), then optionally one space and a case-insensitive b, k, m, g, t or p, the last five with an
// optional "b" or "ib". Decimal units, whatever the suffix (1k = 1kib = 1000), truncated to whole bytes.
// Errors in go-units' words: "invalid size: '-1'", "invalid suffix: 'x'", and strconv's
// `strconv.ParseFloat: parsing "1..5": invalid syntax`.
Result<int64_t> parse_docker_size(std::string_view text);

}  // namespace kiln

#include "common/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>

namespace kiln {
namespace {

// The leading run of decimal digits.
std::string_view leading_digits(std::string_view text) {
  size_t end = 0;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
  return text.substr(0, end);
}

std::string lowercase(std::string_view text) {
  std::string out;
  for (char c : text) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

// Digits only; nullopt on anything else or on overflow.
std::optional<uint64_t> digits_value(std::string_view digits) {
  if (digits.empty() || leading_digits(digits).size() != digits.size()) return std::nullopt;
  uint64_t value = 0;
  for (char c : digits) {
    auto digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Go's strconv.ParseFloat grammar for decimal numbers: [+-] digits [. digits] [e [+-] digits], at least one
// digit in the mantissa.
std::optional<double> parse_go_decimal(std::string_view text) {
  std::string_view rest = text;
  bool negative = false;
  if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
    negative = rest[0] == '-';
    rest.remove_prefix(1);
  }
  size_t i = 0;
  size_t mantissa_digits = 0;
  while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i, ++mantissa_digits;
  if (i < rest.size() && rest[i] == '.') {
    ++i;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return std::nullopt;
  if (i < rest.size() && (rest[i] == 'e' || rest[i] == 'E')) {
    ++i;
    if (i < rest.size() && (rest[i] == '+' || rest[i] == '-')) ++i;
    size_t exponent_digits = 0;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i, ++exponent_digits;
    if (exponent_digits == 0) return std::nullopt;
  }
  if (i != rest.size()) return std::nullopt;
  double value = 0;
  auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
  if (error != std::errc() || end != rest.data() + rest.size()) return std::nullopt;
  return negative ? -value : value;
}

}  // namespace

namespace detail {

Result<uint64_t> parse_unsigned_in_range(std::string_view text, std::string_view what, uint64_t min,
                                         uint64_t max) {
  auto value = digits_value(text);
  if (!value || *value < min || *value > max) {
    return Error::invalid_argument(
        fmt::format("{} must be a whole number from {} to {}, not \"{}\"", what, min, max, text));
  }
  return *value;
}

}  // namespace detail

Result<std::chrono::milliseconds> parse_duration(std::string_view text, std::string_view what,
                                                 std::chrono::milliseconds max) {
  auto invalid = [&] {
    return Error::invalid_argument(
        fmt::format("{} must be a duration from 0 to {}s (whole seconds, or a whole number with ms, s, m or "
                    "h), not \"{}\"",
                    what, max.count() / 1000, text));
  };
  std::string_view digits = leading_digits(text);
  auto number = digits_value(digits);
  if (!number) return invalid();
  std::string unit = lowercase(text.substr(digits.size()));
  uint64_t unit_ms;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit.empty() || unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = uint64_t{60} * 1000;
  } else if (unit == "h") {
    unit_ms = uint64_t{3600} * 1000;
  } else {
    return invalid();
  }
  if (*number > static_cast<uint64_t>(max.count()) / unit_ms) return invalid();
  return std::chrono::milliseconds(static_cast<int64_t>(*number * unit_ms));
}

Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit) {
  auto invalid = [&] {
    return Error::invalid_argument(fmt::format("invalid size \"{}\" (expected e.g. 512M, 2G)", text));
  };
  std::string_view digits = leading_digits(text);
  if (digits.empty()) return invalid();
  auto number = digits_value(digits);
  if (!number) return Error::invalid_argument(fmt::format("size \"{}\" is too large", text));
  std::string suffix = lowercase(text.substr(digits.size()));
  if (suffix.size() > 1 && (suffix.ends_with("ib") || (suffix.ends_with("b") && suffix != "b"))) {
    suffix.resize(suffix.ends_with("ib") ? suffix.size() - 2 : suffix.size() - 1);
  }
  uint64_t unit;
  if (suffix.empty()) {
    unit = bare_unit;
  } else if (suffix == "b") {
    unit = 1;
  } else if (suffix == "k") {
    unit = uint64_t{1} << 10;
  } else if (suffix == "m") {
    unit = uint64_t{1} << 20;
  } else if (suffix == "g") {
    unit = uint64_t{1} << 30;
  } else if (suffix == "t") {
    unit = uint64_t{1} << 40;
  } else {
    return invalid();
  }
  if (*number > UINT64_MAX / unit)
    return Error::invalid_argument(fmt::format("size \"{}\" is too large", text));
  return *number * unit;
}

Result<int64_t> parse_docker_size(std::string_view text) {
  auto invalid_size = [&] { return Error::invalid_argument(fmt::format("invalid size: '{}'", text)); };
  // go-units splits after the last digit, '.' or space; a space there is a separator and is dropped.
  size_t split = text.find_last_of("0123456789. ");
  if (split == std::string_view::npos) return invalid_size();
  std::string_view number = text.substr(0, text[split] == ' ' ? split : split + 1);
  std::string suffix = lowercase(text.substr(split + 1));
  auto value = parse_go_decimal(number);
  if (!value) {
    return Error::invalid_argument(fmt::format("strconv.ParseFloat: parsing \"{}\": invalid syntax", number));
  }
  if (*value < 0) return invalid_size();
  double multiplier = 1;
  if (!suffix.empty() && suffix != "b") {
    static constexpr std::string_view kPrefixes = "kmgtp";
    size_t power = kPrefixes.find(suffix[0]);
    bool tail_ok = suffix.size() == 1 || (suffix.size() == 2 && suffix[1] == 'b') ||
                   (suffix.size() == 3 && suffix.substr(1) == "ib");
    if (power == std::string_view::npos || !tail_ok) {
      return Error::invalid_argument(fmt::format("invalid suffix: '{}'", suffix));
    }
    multiplier = std::pow(1000.0, static_cast<double>(power + 1));
  }
  double bytes = std::trunc(*value * multiplier);
  // 2^63 is exactly representable; anything from there up does not fit an int64_t.
  if (!(bytes < 9223372036854775808.0)) return invalid_size();
  return static_cast<int64_t>(bytes);
}

}  // namespace kiln

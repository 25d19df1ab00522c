#include "common/units.h"

#include <cctype>
#include <charconv>
#include <string>

namespace kiln {

Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit) {
  auto invalid = [&] {
    return Error::invalid_argument(fmt::format("invalid size \"{}\" (expected e.g. 512M, 2G)", text));
  };
  uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end == text.data()) return invalid();
  std::string suffix;
  for (const char* p = end; p != text.data() + text.size(); ++p)
    suffix.push_back(static_cast<char>(std::tolower(*p)));
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
  if (number > UINT64_MAX / unit)
    return Error::invalid_argument(fmt::format("size \"{}\" is too large", text));
  return number * unit;
}

}  // namespace kiln

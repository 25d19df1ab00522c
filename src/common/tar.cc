#include "common/tar.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

namespace kiln::tar {
namespace {

// ustar field offsets and widths (POSIX.1-2008 pax, "ustar Interchange Format").
struct Field {
  size_t offset;
  size_t width;
};
constexpr Field kName{0, 100};
constexpr Field kMode{100, 8};
constexpr Field kUid{108, 8};
constexpr Field kGid{116, 8};
constexpr Field kSize{124, 12};
constexpr Field kMtime{136, 12};
constexpr Field kChecksum{148, 8};
constexpr size_t kTypeOffset = 156;
constexpr Field kLinkName{157, 100};
constexpr Field kMagic{257, 6};
constexpr Field kVersion{263, 2};
constexpr Field kUserName{265, 32};
constexpr Field kGroupName{297, 32};
constexpr Field kDevMajor{329, 8};
constexpr Field kDevMinor{337, 8};
constexpr Field kPrefix{345, 155};

// Largest value an octal field of `width` bytes holds (width - 1 digits and a NUL).
uint64_t octal_limit(size_t width) {
  return (uint64_t{1} << (3 * (width - 1))) - 1;
}

void put_string(std::string& block, Field field, std::string_view value) {
  if (value.empty()) return;
  std::memcpy(block.data() + field.offset, value.data(), std::min(value.size(), field.width));
}

void put_octal(std::string& block, Field field, uint64_t value) {
  std::string digits = fmt::format("{:o}", value);
  if (digits.size() < field.width - 1) digits.insert(0, field.width - 1 - digits.size(), '0');
  put_string(block, field, digits);
}

std::string pax_record(std::string_view key, std::string_view value) {
  // "LEN KEY=VALUE\n", where LEN counts the whole record including its own digits.
  size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t length = body + 1;
  while (std::to_string(length).size() + body != length) ++length;
  return fmt::format("{} {}={}\n", length, key, value);
}

bool ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Splits a long name into ustar's prefix and name at a '/', as Go's splitUSTARPath does.
std::optional<std::pair<std::string_view, std::string_view>> split_ustar_path(std::string_view name) {
  if (name.size() <= kName.width) return std::pair{std::string_view(), name};
  if (name.size() > kPrefix.width + 1 + kName.width) return std::nullopt;
  size_t limit = std::min(name.size() - 1, kPrefix.width);
  size_t slash = name.rfind('/', limit);
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::string_view prefix = name.substr(0, slash);
  std::string_view rest = name.substr(slash + 1);
  if (rest.empty() || rest.size() > kName.width) return std::nullopt;
  return std::pair{prefix, rest};
}

std::string ustar_block(const Header& header, std::string_view name, std::string_view prefix, char type) {
  std::string block(kBlockSize, '\0');
  put_string(block, kName, name);
  put_octal(block, kMode, header.mode & 07777);
  put_octal(block, kUid, header.uid <= octal_limit(kUid.width) ? header.uid : 0);
  put_octal(block, kGid, header.gid <= octal_limit(kGid.width) ? header.gid : 0);
  put_octal(block, kSize, header.size <= octal_limit(kSize.width) ? header.size : 0);
  uint64_t mtime = header.mtime_sec < 0 ? 0 : static_cast<uint64_t>(header.mtime_sec);
  put_octal(block, kMtime, mtime <= octal_limit(kMtime.width) ? mtime : 0);
  block[kTypeOffset] = type;
  put_string(block, kLinkName, header.link_name.size() <= kLinkName.width ? header.link_name : "");
  put_string(block, kMagic, std::string_view("ustar\0", 6));
  put_string(block, kVersion, "00");
  put_string(block, kUserName, header.user_name);
  put_string(block, kGroupName, header.group_name);
  if (header.type == EntryType::kCharDevice || header.type == EntryType::kBlockDevice) {
    put_octal(block, kDevMajor, header.dev_major);
    put_octal(block, kDevMinor, header.dev_minor);
  } else {
    put_octal(block, kDevMajor, 0);
    put_octal(block, kDevMinor, 0);
  }
  put_string(block, kPrefix, prefix);
  std::memset(block.data() + kChecksum.offset, ' ', kChecksum.width);
  unsigned sum = 0;
  for (char c : block) sum += static_cast<unsigned char>(c);
  std::string digits = fmt::format("{:06o}", sum);
  std::memcpy(block.data() + kChecksum.offset, digits.data(), 6);
  block[kChecksum.offset + 6] = '\0';
  block[kChecksum.offset + 7] = ' ';
  return block;
}

std::string_view field_text(const char* block, Field field) {
  std::string_view text(block + field.offset, field.width);
  size_t nul = text.find('\0');
  return nul == std::string_view::npos ? text : text.substr(0, nul);
}

Error corrupt(std::string_view what) {
  return Error::invalid_argument(fmt::format("archive/tar: {}", what));
}

// Octal (NUL/space padded) or, with the high bit of the first byte set, GNU base-256.
Result<uint64_t> parse_number(const char* block, Field field) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(block + field.offset);
  if (bytes[0] & 0x80) {
    if (bytes[0] & 0x40) return corrupt("negative number in header");
    uint64_t value = bytes[0] & 0x3f;
    for (size_t i = 1; i < field.width; ++i) {
      if (value >> 56) return corrupt("number in header too large");
      value = (value << 8) | bytes[i];
    }
    return value;
  }
  uint64_t value = 0;
  bool digits = false;
  for (size_t i = 0; i < field.width; ++i) {
    char c = static_cast<char>(bytes[i]);
    if (c == ' ' && !digits) continue;
    if (c == '\0' || c == ' ') break;
    if (c < '0' || c > '7') return corrupt("invalid octal number in header");
    if (value >> 60) return corrupt("number in header too large");
    value = value * 8 + static_cast<uint64_t>(c - '0');
    digits = true;
  }
  return value;
}

Result<uint64_t> parse_decimal(std::string_view text, std::string_view key) {
  uint64_t value = 0;
  if (text.empty()) return corrupt(fmt::format("invalid PAX {}", key));
  for (char c : text) {
    if (c < '0' || c > '9' || value > (UINT64_MAX - 9) / 10)
      return corrupt(fmt::format("invalid PAX {}", key));
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

// Applies PAX records ("LEN key=value\n"...) to `header`.
Result<void> apply_pax(std::string_view records, Header& header) {
  while (!records.empty()) {
    size_t space = records.find(' ');
    if (space == std::string_view::npos) return corrupt("invalid PAX record");
    uint64_t length = KILN_TRY(parse_decimal(records.substr(0, space), "record length"));
    if (length <= space + 1 || length > records.size() || records[length - 1] != '\n')
      return corrupt("invalid PAX record");
    std::string_view record = records.substr(space + 1, length - space - 2);
    records.remove_prefix(length);
    size_t equals = record.find('=');
    if (equals == std::string_view::npos) return corrupt("invalid PAX record");
    std::string_view key = record.substr(0, equals);
    std::string_view value = record.substr(equals + 1);
    if (key == "path") {
      header.name = value;
    } else if (key == "linkpath") {
      header.link_name = value;
    } else if (key == "size") {
      header.size = KILN_TRY(parse_decimal(value, key));
    } else if (key == "uid") {
      header.uid = static_cast<uint32_t>(KILN_TRY(parse_decimal(value, key)));
    } else if (key == "gid") {
      header.gid = static_cast<uint32_t>(KILN_TRY(parse_decimal(value, key)));
    } else if (key == "uname") {
      header.user_name = value;
    } else if (key == "gname") {
      header.group_name = value;
    } else if (key == "mtime") {
      std::string_view seconds = value.substr(0, value.find('.'));
      if (!seconds.empty() && seconds[0] != '-')
        header.mtime_sec = static_cast<int64_t>(KILN_TRY(parse_decimal(seconds, key)));
    } else if (key.starts_with("SCHILY.xattr.")) {
      header.xattrs[std::string(key.substr(13))] = std::string(value);
    }
  }
  return ok();
}

}  // namespace

std::string encode_header(const Header& header) {
  std::string name = header.name;
  auto split = split_ustar_path(name);
  std::string pax;
  if (!split || !ascii(name)) pax += pax_record("path", name);
  if (header.link_name.size() > kLinkName.width || !ascii(header.link_name))
    pax += pax_record("linkpath", header.link_name);
  if (header.size > octal_limit(kSize.width)) pax += pax_record("size", std::to_string(header.size));
  if (header.uid > octal_limit(kUid.width)) pax += pax_record("uid", std::to_string(header.uid));
  if (header.gid > octal_limit(kGid.width)) pax += pax_record("gid", std::to_string(header.gid));
  if (header.mtime_sec < 0 || static_cast<uint64_t>(header.mtime_sec) > octal_limit(kMtime.width))
    pax += pax_record("mtime", std::to_string(header.mtime_sec));
  if (header.user_name.size() > kUserName.width || !ascii(header.user_name))
    pax += pax_record("uname", header.user_name);
  if (header.group_name.size() > kGroupName.width || !ascii(header.group_name))
    pax += pax_record("gname", header.group_name);
  for (const auto& [key, value] : header.xattrs) pax += pax_record("SCHILY.xattr." + key, value);

  std::string out;
  std::string_view short_name = split ? split->second : std::string_view(name).substr(0, kName.width);
  std::string_view prefix = split ? split->first : std::string_view();
  if (!pax.empty()) {
    // Go names the extended header "PaxHeaders.0/<base>"; readers ignore the name.
    std::string base = name;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    base = base.substr(base.rfind('/') == std::string::npos ? 0 : base.rfind('/') + 1);
    Header pax_header{.name = ("PaxHeaders.0/" + base).substr(0, kName.width), .size = pax.size()};
    out += ustar_block(pax_header, pax_header.name, "", 'x');
    out += pax;
    out += padding_for(pax.size());
    if (!split) {
      short_name = std::string_view(name).substr(0, kName.width);
      prefix = {};
    }
  }
  out += ustar_block(header, short_name, prefix, static_cast<char>(header.type));
  return out;
}

std::string padding_for(uint64_t size) {
  return std::string((kBlockSize - size % kBlockSize) % kBlockSize, '\0');
}

std::string end_of_archive() {
  return std::string(2 * kBlockSize, '\0');
}

Result<bool> Reader::read_exact(char* buffer, size_t size) {
  size_t got = 0;
  while (got < size) {
    size_t n = KILN_TRY(source_(buffer + got, size - got));
    if (n == 0) {
      if (got == 0) return false;
      return corrupt("unexpected EOF");
    }
    got += n;
  }
  return true;
}

Result<void> Reader::skip_rest() {
  char buffer[4096];
  while (remaining_ > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(remaining_, sizeof buffer));
    if (!KILN_TRY(read_exact(buffer, chunk))) return corrupt("unexpected EOF");
    remaining_ -= chunk;
  }
  while (padding_ > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(padding_, sizeof buffer));
    if (!KILN_TRY(read_exact(buffer, chunk))) return corrupt("unexpected EOF");
    padding_ -= chunk;
  }
  return ok();
}

Result<std::string> Reader::read_payload(uint64_t size) {
  if (size > (uint64_t{1} << 20)) return corrupt("extended header too large");
  std::string data(size + (kBlockSize - size % kBlockSize) % kBlockSize, '\0');
  if (!data.empty() && !KILN_TRY(read_exact(data.data(), data.size()))) return corrupt("unexpected EOF");
  data.resize(size);
  return data;
}

Result<std::optional<Header>> Reader::next() {
  KILN_TRY(skip_rest());
  Header pending;  // what PAX and GNU headers said about the next entry
  bool have_name = false;
  bool have_link = false;
  Header pax_values;
  std::string pax_records;
  char block[kBlockSize];
  for (;;) {
    if (ended_) return std::optional<Header>();
    if (!KILN_TRY(read_exact(block, kBlockSize))) {
      ended_ = true;
      return std::optional<Header>();
    }
    if (std::all_of(block, block + kBlockSize, [](char c) { return c == '\0'; })) {
      ended_ = true;  // the first of the two end blocks; the rest of the input is not read
      return std::optional<Header>();
    }
    unsigned unsigned_sum = 0;
    int signed_sum = 0;
    for (size_t i = 0; i < kBlockSize; ++i) {
      bool in_checksum = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.width;
      unsigned_sum += in_checksum ? ' ' : static_cast<unsigned char>(block[i]);
      signed_sum += in_checksum ? ' ' : static_cast<signed char>(block[i]);
    }
    uint64_t stored = KILN_TRY(parse_number(block, kChecksum));
    if (stored != unsigned_sum && static_cast<int64_t>(stored) != signed_sum)
      return corrupt("invalid header");
    char type = block[kTypeOffset];
    uint64_t size = KILN_TRY(parse_number(block, kSize));
    if (type == 'x' || type == 'g') {
      std::string records = KILN_TRY(read_payload(size));
      if (type == 'x') pax_records += records;
      continue;
    }
    if (type == 'L' || type == 'K') {
      std::string value = KILN_TRY(read_payload(size));
      value = value.substr(0, value.find('\0'));
      if (type == 'L') {
        pending.name = value;
        have_name = true;
      } else {
        pending.link_name = value;
        have_link = true;
      }
      continue;
    }
    Header header;
    std::string_view magic = field_text(block, kMagic);
    std::string_view prefix = magic == "ustar" ? field_text(block, kPrefix) : std::string_view();
    header.name = prefix.empty() ? std::string(field_text(block, kName))
                                 : fmt::format("{}/{}", prefix, field_text(block, kName));
    header.mode = static_cast<uint32_t>(KILN_TRY(parse_number(block, kMode)) & 07777);
    header.uid = static_cast<uint32_t>(KILN_TRY(parse_number(block, kUid)));
    header.gid = static_cast<uint32_t>(KILN_TRY(parse_number(block, kGid)));
    header.size = size;
    header.mtime_sec = static_cast<int64_t>(KILN_TRY(parse_number(block, kMtime)));
    header.link_name = field_text(block, kLinkName);
    header.user_name = field_text(block, kUserName);
    header.group_name = field_text(block, kGroupName);
    switch (type) {
      case '\0':
      case '0':
      case '7':
        header.type = EntryType::kRegular;
        break;
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
        header.type = static_cast<EntryType>(type);
        break;
      default:
        return corrupt(fmt::format("unsupported entry type '{}' for {}", type, header.name));
    }
    if (header.type == EntryType::kCharDevice || header.type == EntryType::kBlockDevice) {
      header.dev_major = static_cast<uint32_t>(KILN_TRY(parse_number(block, kDevMajor)));
      header.dev_minor = static_cast<uint32_t>(KILN_TRY(parse_number(block, kDevMinor)));
    }
    if (have_name) header.name = pending.name;
    if (have_link) header.link_name = pending.link_name;
    KILN_TRY(apply_pax(pax_records, header));
    // Old tars mark directories only by a trailing slash.
    if (type == '\0' && header.name.ends_with('/')) header.type = EntryType::kDirectory;
    // Only regular files carry content; whatever another entry claims to carry is skipped now, so read()
    // returns 0 for it.
    remaining_ = header.size;
    padding_ = (kBlockSize - remaining_ % kBlockSize) % kBlockSize;
    if (header.type != EntryType::kRegular) {
      header.size = 0;
      KILN_TRY(skip_rest());
    }
    return std::optional<Header>(std::move(header));
  }
}

Result<size_t> Reader::read(char* buffer, size_t size) {
  if (remaining_ == 0) return size_t{0};
  size_t chunk = static_cast<size_t>(std::min<uint64_t>(remaining_, size));
  size_t n = KILN_TRY(source_(buffer, chunk));
  if (n == 0) return corrupt("unexpected EOF");
  remaining_ -= n;
  return n;
}

uint32_t go_file_mode(uint32_t st_mode) {
  // Go's os.FileMode: type bits at the top (io/fs: ModeDir = 1<<31, ModeSymlink = 1<<27, ...).
  uint32_t mode = st_mode & 0777;
  switch (st_mode & S_IFMT) {
    case S_IFDIR:
      mode |= 1U << 31;
      break;
    case S_IFLNK:
      mode |= 1U << 27;
      break;
    case S_IFIFO:
      mode |= 1U << 25;
      break;
    case S_IFSOCK:
      mode |= 1U << 24;
      break;
    case S_IFBLK:
      mode |= 1U << 26;
      break;
    case S_IFCHR:
      mode |= (1U << 26) | (1U << 21);
      break;
    default:
      break;
  }
  if (st_mode & S_ISUID) mode |= 1U << 23;
  if (st_mode & S_ISGID) mode |= 1U << 22;
  if (st_mode & S_ISVTX) mode |= 1U << 20;
  return mode;
}

}  // namespace kiln::tar

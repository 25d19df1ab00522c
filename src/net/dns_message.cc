#include "net/dns_message.h"

#include <arpa/inet.h>

#include <charconv>

namespace kiln::net::dns {

namespace {

uint16_t read16(std::string_view m, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(m[at]) << 8) | static_cast<uint8_t>(m[at + 1]));
}

void put16(std::string& out, uint16_t value) {
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xFF));
}

void put32(std::string& out, uint32_t value) {
  put16(out, static_cast<uint16_t>(value >> 16));
  put16(out, static_cast<uint16_t>(value & 0xFFFF));
}

Error malformed(std::string_view why) {
  return Error::protocol(fmt::format("malformed DNS message: {}", why));
}

// Reads the name at `*at` (following compression pointers, RFC 1035 §4.1.4), leaves `*at` past it in the
// message. What a pointer leads to must lie wholly before that pointer (and past the header): a name only
// reuses what precedes it, the positions read strictly decrease from pointer to pointer, so no input loops,
// and a reply that copies the question section reads the same name. At most 255 bytes on the wire.
Result<void> read_name(std::string_view m, size_t* at, Question* into) {
  size_t pos = *at;
  size_t limit = m.size();  // bytes at or past this may not be read: the last pointer followed
  size_t resume = 0;        // where the caller continues, once a pointer has been followed
  size_t wire_length = 1;
  std::string name;
  for (;;) {
    if (pos >= limit) return malformed("name runs past the end");
    auto length = static_cast<uint8_t>(m[pos]);
    if ((length & 0xC0) == 0xC0) {
      if (pos + 1 >= limit) return malformed("truncated pointer");
      size_t target = ((length & 0x3F) << 8) | static_cast<uint8_t>(m[pos + 1]);
      if (target >= pos) return malformed("forward or looping name pointer");
      if (target < kHeaderSize) return malformed("name pointer into the header");
      if (resume == 0) resume = pos + 2;
      limit = pos;
      pos = target;
      continue;
    }
    if (length & 0xC0) return malformed("unknown label type");
    if (length == 0) {
      ++pos;
      break;
    }
    wire_length += length + 1u;
    if (wire_length > 255) return malformed("name longer than 255 bytes");
    if (pos + 1 + length > limit) return malformed("label runs past the end");
    if (!name.empty()) name.push_back('.');
    for (size_t i = 0; i < length; ++i) {
      char c = m[pos + 1 + i];
      if (c == '.' || c <= ' ' || c > '~') into->plain = false;
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      name.push_back(c);
    }
    pos += 1 + length;
  }
  *at = resume ? resume : pos;
  into->name = std::move(name);
  return ok();
}

}  // namespace

Result<Query> parse_query(std::string_view m) {
  if (m.size() < kHeaderSize) return malformed("shorter than a header");
  Query query;
  query.id = read16(m, 0);
  query.flags = read16(m, 2);
  uint16_t questions = read16(m, 4);
  uint16_t answers = read16(m, 6);
  uint16_t authorities = read16(m, 8);
  uint16_t additionals = read16(m, 10);
  if (questions != 1) return malformed("not exactly one question");
  size_t at = kHeaderSize;
  KILN_TRY(read_name(m, &at, &query.question));
  if (at + 4 > m.size()) return malformed("question runs past the end");
  query.question.type = read16(m, at);
  query.question.klass = read16(m, at + 2);
  at += 4;
  query.question_end = at;
  // Skip the other records, looking for an OPT record's payload size among the additional ones.
  unsigned records = unsigned{answers} + authorities + additionals;
  for (unsigned i = 0; i < records; ++i) {
    Question owner;
    KILN_TRY(read_name(m, &at, &owner));
    if (at + 10 > m.size()) return malformed("record runs past the end");
    uint16_t type = read16(m, at);
    uint16_t klass = read16(m, at + 2);
    uint16_t rdlength = read16(m, at + 8);
    at += 10;
    if (at + rdlength > m.size()) return malformed("record data runs past the end");
    at += rdlength;
    if (type == kTypeOpt && i >= unsigned{answers} + authorities)
      query.udp_size = std::max<size_t>(512, klass);
  }
  return query;
}

std::optional<uint16_t> message_id(std::string_view message) {
  if (message.size() < kHeaderSize) return std::nullopt;
  return read16(message, 0);
}

bool truncated(std::string_view message) {
  return message.size() >= kHeaderSize && (read16(message, 2) & 0x0200);
}

namespace {

// QR, the query's opcode and RD, RA (we recurse through the upstream), and the rcode.
uint16_t reply_flags(uint16_t query_flags, Rcode rcode) {
  return static_cast<uint16_t>(0x8000 | (query_flags & 0x7800) | (query_flags & 0x0100) | 0x0080 |
                               static_cast<uint16_t>(rcode));
}

}  // namespace

std::string make_reply(const Query& query, std::string_view raw, Rcode rcode,
                       const std::vector<Answer>& answers) {
  std::string out;
  put16(out, query.id);
  put16(out, reply_flags(query.flags, rcode));
  put16(out, 1);
  put16(out, static_cast<uint16_t>(answers.size()));
  put16(out, 0);
  put16(out, 0);
  out.append(raw.substr(kHeaderSize, query.question_end - kHeaderSize));
  for (const auto& answer : answers) {
    put16(out, 0xC000 | kHeaderSize);  // the question's name
    put16(out, answer.type);
    put16(out, kClassIn);
    put32(out, answer.ttl);
    put16(out, static_cast<uint16_t>(answer.rdata.size()));
    out.append(answer.rdata);
  }
  return out;
}

std::string make_header_reply(uint16_t id, uint16_t query_flags, Rcode rcode) {
  std::string out;
  put16(out, id);
  put16(out, reply_flags(query_flags, rcode));
  for (int i = 0; i < 4; ++i) put16(out, 0);
  return out;
}

std::string with_id(std::string reply, uint16_t id) {
  if (reply.size() >= 2) {
    reply[0] = static_cast<char>(id >> 8);
    reply[1] = static_cast<char>(id & 0xFF);
  }
  return reply;
}

std::optional<std::string> a_rdata(std::string_view ipv4) {
  in_addr address{};
  if (::inet_pton(AF_INET, std::string(ipv4).c_str(), &address) != 1) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(&address), 4);
}

std::string name_rdata(std::string_view dotted) {
  std::string out;
  while (!dotted.empty()) {
    size_t dot = dotted.find('.');
    std::string_view label = dotted.substr(0, dot);
    if (label.size() > 63) label = label.substr(0, 63);
    if (!label.empty()) {
      out.push_back(static_cast<char>(label.size()));
      out.append(label);
    }
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
  out.push_back('\0');
  return out;
}

std::optional<std::string> ipv4_of_reverse_name(std::string_view name) {
  constexpr std::string_view kSuffix = ".in-addr.arpa";
  if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix)
    return std::nullopt;
  name.remove_suffix(kSuffix.size());
  std::string octets[4];
  for (int i = 3; i >= 0; --i) {
    size_t dot = name.find('.');
    std::string_view part = name.substr(0, dot);
    unsigned value = 0;
    auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || part.size() > 3 || error != std::errc() || end != part.data() + part.size() ||
        value > 255)
      return std::nullopt;
    octets[i] = std::to_string(value);
    if ((i == 0) != (dot == std::string_view::npos)) return std::nullopt;
    if (dot != std::string_view::npos) name.remove_prefix(dot + 1);
  }
  return octets[0] + "." + octets[1] + "." + octets[2] + "." + octets[3];
}

}  // namespace kiln::net::dns

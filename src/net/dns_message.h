// The small part of DNS (RFC 1035) the embedded DNS server needs: reading a query's header, question and
// EDNS size (RFC 6891), and writing replies. Every input is untrusted (any process on a network can send
// one): the parser bounds every read and every name. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace kiln::net::dns {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypePtr = 12;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kTypeOpt = 41;
constexpr uint16_t kClassIn = 1;

enum class Rcode : uint8_t { kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4 };

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxMessage = 65535;

struct Question {
  std::string name;   // dotted, lowercased, no trailing dot ("" is the root)
  bool plain = true;  // false: a label holds a '.' or a byte outside printable ASCII (never one of ours)
  uint16_t type = 0;
  uint16_t klass = 0;
};

struct Query {
  uint16_t id = 0;
  uint16_t flags = 0;  // header flags as sent
  Question question;
  size_t question_end = 0;  // offset just past the question section in the message
  size_t udp_size = 512;    // the largest UDP reply the client takes (512, or its EDNS payload size)
  bool response() const { return flags & 0x8000; }
  uint8_t opcode() const { return (flags >> 11) & 0xF; }
  bool truncated() const { return flags & 0x0200; }
};

// Parses a message with exactly one question. kProtocol errors for anything malformed.
Result<Query> parse_query(std::string_view message);

// The id of a message that has at least a header, else nothing.
std::optional<uint16_t> message_id(std::string_view message);
// The TC bit of a reply (false for less than a header).
bool truncated(std::string_view message);

struct Answer {
  uint16_t type = kTypeA;
  uint32_t ttl = 600;
  std::string rdata;  // wire form
};

// A reply to `query` (parsed from `raw`): its question copied, then `answers` named by a pointer to it.
std::string make_reply(const Query& query, std::string_view raw, Rcode rcode,
                       const std::vector<Answer>& answers);
// A reply with no question, only a header: for a query whose question could not be read.
std::string make_header_reply(uint16_t id, uint16_t query_flags, Rcode rcode);
// `reply` with its id replaced (upstream replies go back under the client's id).
std::string with_id(std::string reply, uint16_t id);

// rdata helpers.
std::optional<std::string> a_rdata(std::string_view ipv4);  // "1.2.3.4" -> 4 bytes
std::string name_rdata(std::string_view dotted);            // "web.net" -> 3web3net0
// "4.3.2.1.in-addr.arpa" -> "1.2.3.4"; nothing if `name` is not a full IPv4 reverse name.
std::optional<std::string> ipv4_of_reverse_name(std::string_view name);

}  // namespace kiln::net::dns

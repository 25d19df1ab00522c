// libFuzzer target: arbitrary bytes as a DNS query, as any process on a network may send one to its DNS
// server. parse_query must return an error or a query whose offsets lie inside the message, and a reply built
// from it must parse again; nothing may crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "net/dns_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view message(reinterpret_cast<const char*>(data), size);
  auto query = kiln::net::dns::parse_query(message);
  (void)kiln::net::dns::message_id(message);
  (void)kiln::net::dns::truncated(message);
  if (!query) return 0;
  if (query->question_end > message.size()) std::abort();
  (void)kiln::net::dns::ipv4_of_reverse_name(query->question.name);
  std::string reply = kiln::net::dns::make_reply(*query, message, kiln::net::dns::Rcode::kNoError,
                                                 {{kiln::net::dns::kTypeA, 600, std::string(4, '\1')}});
  if (!kiln::net::dns::parse_query(reply)) std::abort();
  return 0;
}

#include "net/dns_message.h"

#include <gtest/gtest.h>

#include <random>

namespace kiln::net::dns {
namespace {

std::string header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an = 0, uint16_t ns = 0,
                   uint16_t ar = 0) {
  std::string out;
  for (uint16_t v : {id, flags, qd, an, ns, ar}) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v & 0xFF));
  }
  return out;
}

TEST(DnsMessageTest, ParsesAQuestionLowercased) {
  auto query =
      parse_query(header(0x1234, 0x0100, 1) + std::string("\x03Web\x05MyNet\x00\x00\x01\x00\x01", 15));
  ASSERT_TRUE(query) << query.error().message();
  EXPECT_EQ(query->id, 0x1234);
  EXPECT_EQ(query->question.name, "web.mynet");
  EXPECT_TRUE(query->question.plain);
  EXPECT_EQ(query->question.type, kTypeA);
  EXPECT_EQ(query->question.klass, kClassIn);
  EXPECT_EQ(query->udp_size, 512u);
  EXPECT_FALSE(query->response());
}

TEST(DnsMessageTest, ReadsTheEdnsPayloadSize) {
  std::string opt("\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 11);  // root, OPT, 4096, ttl 0, rdlen 0
  auto query = parse_query(header(1, 0x0100, 1, 0, 0, 1) + std::string("\x01x\x00\x00\x01\x00\x01", 7) + opt);
  ASSERT_TRUE(query) << query.error().message();
  EXPECT_EQ(query->udp_size, 4096u);
}

TEST(DnsMessageTest, RefusesMalformedNames) {
  // Not one question.
  EXPECT_FALSE(parse_query(header(1, 0, 0)));
  EXPECT_FALSE(parse_query(header(1, 0, 2) + std::string("\x00\x00\x01\x00\x01\x00\x00\x01\x00\x01", 10)));
  // A pointer to itself, and a forward pointer.
  EXPECT_FALSE(parse_query(header(1, 0, 1) + std::string("\xC0\x0C\x00\x01\x00\x01", 6)));
  EXPECT_FALSE(parse_query(header(1, 0, 1) + std::string("\xC0\x20\x00\x01\x00\x01", 6)));
  // A pointer to a label that runs past the pointer (found by the fuzzer).
  EXPECT_FALSE(parse_query(header(1, 0, 1) + std::string("\x02\x05"
                                                         "a\xC0\x0D\x00\x01\x00\x01",
                                                         9)));
  // A pointer into the header.
  EXPECT_FALSE(parse_query(header(1, 0, 1) + std::string("\xC0\x04\x00\x01\x00\x01", 6)));
  // A label past the end, a name over 255 bytes.
  EXPECT_FALSE(parse_query(header(1, 0, 1) + std::string("\x05"
                                                         "ab",
                                                         3)));
  std::string long_name;
  for (int i = 0; i < 5; ++i) long_name += std::string(1, '\x3f') + std::string(63, 'a');
  EXPECT_FALSE(parse_query(header(1, 0, 1) + long_name + std::string("\x00\x00\x01\x00\x01", 5)));
  // A question cut short.
  EXPECT_FALSE(parse_query(header(1, 0, 1) + std::string("\x01x\x00\x00", 4)));
}

TEST(DnsMessageTest, BackwardPointersAreFollowed) {
  // Question 1 is "a.b" followed by a record whose owner is a pointer to it (an additional record).
  std::string m = header(1, 0x0100, 1, 0, 0, 1) +
                  std::string(
                      "\x01"
                      "a\x01"
                      "b\x00\x00\x01\x00\x01",
                      9) +
                  std::string("\xC0\x0C\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  auto query = parse_query(m);
  ASSERT_TRUE(query) << query.error().message();
  EXPECT_EQ(query->question.name, "a.b");
}

TEST(DnsMessageTest, APointerIntoAnEarlierPartOfTheSameNameIsFollowed) {
  // Found by the fuzzer: a label, then a pointer to a byte inside that label that reads as the root. Legal;
  // and the reply, whose answer points at this name, must parse too.
  std::string raw = header(1, 0x0100, 1) + std::string(
                                               "\x03"
                                               "a\x00"
                                               "b\xC0\x0E\x00\x01\x00\x01",
                                               10);
  auto query = parse_query(raw);
  ASSERT_TRUE(query) << query.error().message();
  EXPECT_EQ(query->question.name, std::string("a\0b", 3));
  EXPECT_FALSE(query->question.plain);
  EXPECT_TRUE(parse_query(make_reply(*query, raw, Rcode::kNoError, {{kTypeA, 600, std::string(4, '\1')}})));
  // A backward pointer whose labels run into the pointer itself (a loop): refused.
  std::string loop = header(1, 0, 1) + std::string(
                                           "\x01"
                                           "a\xC0\x0C",
                                           4);
  EXPECT_FALSE(parse_query(loop));
}

TEST(DnsMessageTest, LabelsWithDotsAreNotPlain) {
  auto query = parse_query(header(1, 0, 1) + std::string("\x03"
                                                         "a.b\x00\x00\x01\x00\x01",
                                                         9));
  ASSERT_TRUE(query);
  EXPECT_FALSE(query->question.plain);
}

TEST(DnsMessageTest, ReplyCarriesTheQuestionAndAnswers) {
  std::string raw = header(7, 0x0100, 1) + std::string("\x03web\x00\x00\x01\x00\x01", 9);
  auto query = parse_query(raw);
  ASSERT_TRUE(query);
  std::string reply = make_reply(*query, raw, Rcode::kNoError, {{kTypeA, 600, *a_rdata("10.0.0.2")}});
  auto parsed = parse_query(reply);  // a reply with one question parses too
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_TRUE(parsed->response());
  EXPECT_EQ(parsed->id, 7);
  EXPECT_EQ(reply.substr(reply.size() - 4), std::string("\x0a\x00\x00\x02", 4));
  EXPECT_EQ(reply[3] & 0x0F, 0);
  EXPECT_EQ(static_cast<uint8_t>(reply[7]), 1);  // ANCOUNT
}

TEST(DnsMessageTest, ReverseNames) {
  EXPECT_EQ(ipv4_of_reverse_name("4.3.2.1.in-addr.arpa"), "1.2.3.4");
  EXPECT_EQ(ipv4_of_reverse_name("4.3.2.in-addr.arpa"), std::nullopt);
  EXPECT_EQ(ipv4_of_reverse_name("5.4.3.2.1.in-addr.arpa"), std::nullopt);
  EXPECT_EQ(ipv4_of_reverse_name("256.3.2.1.in-addr.arpa"), std::nullopt);
  EXPECT_EQ(ipv4_of_reverse_name("a.3.2.1.in-addr.arpa"), std::nullopt);
  EXPECT_EQ(ipv4_of_reverse_name("in-addr.arpa"), std::nullopt);
  EXPECT_EQ(name_rdata("web.mynet"), std::string("\x03web\x05mynet\x00", 11));
}

TEST(DnsMessageTest, RandomBytesNeverCrashTheParser) {
  std::mt19937 rng(42);
  std::string base = header(9, 0x0100, 1, 0, 0, 1) + std::string("\x03web\x04test\x00\x00\x01\x00\x01", 14) +
                     std::string("\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 11);
  for (int i = 0; i < 200000; ++i) {
    std::string m;
    if (i % 2 == 0) {
      m.resize(rng() % 64);
      for (auto& c : m) c = static_cast<char>(rng());
    } else {
      m = base;
      for (auto flips = 1 + rng() % 4; flips > 0; --flips) m[rng() % m.size()] = static_cast<char>(rng());
      m.resize(rng() % (m.size() + 1));
    }
    auto query = parse_query(m);
    if (query) {
      EXPECT_LE(query->question_end, m.size());
    }
  }
}

}  // namespace
}  // namespace kiln::net::dns

#include "common/tar.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace kiln::tar {
namespace {

// Reads an in-memory archive, a few bytes at a time (as a pipe hands them over).
Reader reader_of(const std::string& archive, size_t step = 7) {
  auto offset = std::make_shared<size_t>(0);
  return Reader([archive, offset, step](char* buffer, size_t size) -> Result<size_t> {
    size_t n = std::min({size, step, archive.size() - *offset});
    std::copy_n(archive.data() + *offset, n, buffer);
    *offset += n;
    return n;
  });
}

std::string read_all(Reader& reader) {
  std::string out;
  char buffer[100];
  for (;;) {
    auto n = reader.read(buffer, sizeof buffer);
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) return out;
    out.append(buffer, *n);
  }
}

std::string entry(const Header& header, std::string_view content = {}) {
  return encode_header(header) + std::string(content) + padding_for(content.size());
}

TEST(Tar, HeadersAndContentRoundTrip) {
  std::string long_name = std::string(120, 'd') + "/" + std::string(130, 'f');
  Header file{
      .name = "etc/passwd", .mode = 04755, .uid = 1000, .gid = 50, .size = 5, .mtime_sec = 1700000000};
  Header dir{.name = "etc/", .type = EntryType::kDirectory, .mode = 0755};
  Header link{
      .name = "bin/sh", .type = EntryType::kSymlink, .mode = 0777, .link_name = std::string(150, 'x')};
  Header hard{.name = "etc/again", .type = EntryType::kHardLink, .link_name = "etc/passwd"};
  Header device{
      .name = "dev/null", .type = EntryType::kCharDevice, .mode = 0666, .dev_major = 1, .dev_minor = 3};
  Header longer{
      .name = long_name, .uid = 3000000, .size = 3, .xattrs = {{"security.capability", "\x01\x02"}}};
  std::string archive = entry(dir) + entry(file, "hello") + entry(link) + entry(hard) + entry(device) +
                        entry(longer, "abc") + end_of_archive();
  ASSERT_EQ(archive.size() % kBlockSize, 0u);
  Reader reader = reader_of(archive);
  for (const auto& [expected, content] : std::vector<std::pair<Header, std::string>>{
           {dir, ""}, {file, "hello"}, {link, ""}, {hard, ""}, {device, ""}, {longer, "abc"}}) {
    auto next = reader.next();
    ASSERT_TRUE(next.has_value()) << next.error().message();
    ASSERT_TRUE(next->has_value());
    EXPECT_EQ(**next, expected) << expected.name;
    EXPECT_EQ(read_all(reader), content);
  }
  auto end = reader.next();
  ASSERT_TRUE(end.has_value());
  EXPECT_FALSE(end->has_value());
}

TEST(Tar, UnreadContentIsSkipped) {
  std::string archive = entry({.name = "a", .size = 600}, std::string(600, 'a')) +
                        entry({.name = "b", .size = 1}, "b") + end_of_archive();
  Reader reader = reader_of(archive, 1000);
  ASSERT_EQ((*reader.next())->name, "a");
  auto second = reader.next();
  ASSERT_TRUE(second.has_value() && second->has_value());
  EXPECT_EQ((*second)->name, "b");
  EXPECT_EQ(read_all(reader), "b");
}

TEST(Tar, GnuLongNamesAreRead) {
  std::string name(200, 'n');
  Header gnu{.name = "././@LongLink", .size = name.size() + 1};
  std::string long_link = encode_header(gnu);
  long_link[156] = 'L';
  // The checksum covers the type byte: recompute it as a GNU tar would have written it.
  std::fill(long_link.begin() + 148, long_link.begin() + 156, ' ');
  unsigned sum = 0;
  for (char c : long_link) sum += static_cast<unsigned char>(c);
  std::string digits = fmt::format("{:06o}", sum);
  std::copy(digits.begin(), digits.end(), long_link.begin() + 148);
  long_link[154] = '\0';
  std::string archive = long_link + name + '\0' + padding_for(name.size() + 1) +
                        entry({.name = "truncated", .size = 1}, "x") + end_of_archive();
  Reader reader = reader_of(archive);
  auto next = reader.next();
  ASSERT_TRUE(next.has_value()) << next.error().message();
  EXPECT_EQ((*next)->name, name);
}

TEST(Tar, DamageIsAnError) {
  std::string archive = entry({.name = "a", .size = 3}, "abc") + end_of_archive();
  std::string bad_checksum = archive;
  bad_checksum[0] = 'b';
  auto next = reader_of(bad_checksum).next();
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().category(), ErrorCategory::kInvalidArgument);
  Reader truncated = reader_of(archive.substr(0, kBlockSize + 2));
  ASSERT_TRUE(truncated.next().has_value());
  char buffer[8];
  ASSERT_TRUE(truncated.read(buffer, sizeof buffer).has_value());
  EXPECT_FALSE(truncated.read(buffer, sizeof buffer).has_value()) << "content cut short";
}

TEST(Tar, GoFileModeBits) {
  EXPECT_EQ(go_file_mode(S_IFDIR | 0755), 2147484141u);  // what dockerd reports for a 0755 directory
  EXPECT_EQ(go_file_mode(S_IFLNK | 0777), 134218239u);
  EXPECT_EQ(go_file_mode(S_IFREG | 0644), 420u);
}

}  // namespace
}  // namespace kiln::tar

#include "image/layer_apply.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "common/errno_text.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"
#include "image/test_tar_builder.h"

namespace kiln::image {
namespace {

// A ustar header written by hand, so it can claim any size regardless of the data that follows.
std::string raw_header(const std::string& name, uint64_t size, char type = '0') {
  std::string header(512, '\0');
  auto put = [&](size_t offset, size_t width, const std::string& text) {
    header.replace(offset, text.size(), text);
    (void)width;
  };
  put(0, 100, name);
  put(100, 8, "0000644");
  put(108, 8, "0000000");
  put(116, 8, "0000000");
  put(124, 12, fmt::format("{:011o}", size));
  put(136, 12, "00000000000");
  header[156] = type;
  put(257, 6, std::string("ustar\0", 6));
  put(263, 2, "00");
  header.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  put(148, 8, fmt::format("{:06o}", sum) + std::string("\0 ", 2));
  return header;
}

class LayerApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("kiln-layer-test-");
    ASSERT_TRUE(dir.has_value());
    top_ = std::make_unique<TempDir>(std::move(*dir));
    root_ = top_->path() + "/root";
    outside_ = top_->path() + "/outside";
    std::filesystem::create_directories(root_);
    std::filesystem::create_directories(outside_);
    ASSERT_TRUE(write_file_atomic(outside_ + "/secret", "untouched").has_value());
  }

  Result<LayerStats> apply(const std::string& layer, UnpackOptions options = {}) {
    UniqueFd data(::memfd_create("layer", MFD_CLOEXEC));
    EXPECT_TRUE(write_all(data.get(), layer).has_value());
    ::lseek(data.get(), 0, SEEK_SET);
    UniqueFd root(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return apply_layer(root.get(), data.get(), options);
  }

  void expect_rejected(const std::string& layer, LayerError kind, UnpackOptions options = {}) {
    auto result = apply(layer, options);
    ASSERT_FALSE(result.has_value()) << "layer was accepted";
    EXPECT_EQ(result.error().category(), ErrorCategory::kProtocol) << result.error().message();
    EXPECT_NE(result.error().message().find(layer_error_message(kind)), std::string::npos)
        << result.error().message();
    expect_outside_untouched();
  }

  void expect_outside_untouched() {
    size_t entries = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::recursive_directory_iterator(outside_)) ++entries;
    EXPECT_EQ(entries, 1u) << "something was written outside the root";
    EXPECT_EQ(*read_file(outside_ + "/secret"), "untouched");
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(top_->path())) {
      std::string name = e.path().filename();
      EXPECT_TRUE(name == "root" || name == "outside") << "stray " << name;
    }
  }

  std::string in_root(const std::string& path) const { return root_ + "/" + path; }
  bool exists(const std::string& path) const {
    struct stat st {};
    return ::lstat(in_root(path).c_str(), &st) == 0;
  }
  struct stat stat_of(const std::string& path) const {
    struct stat st {};
    EXPECT_EQ(::lstat(in_root(path).c_str(), &st), 0) << path;
    return st;
  }
  std::string content(const std::string& path) const {
    return read_file(in_root(path)).value_or("<missing>");
  }

  std::unique_ptr<TempDir> top_;
  std::string root_;
  std::string outside_;
};

TEST_F(LayerApplyTest, CreatesEveryEntryTypeWithMetadata) {
  std::string layer =
      TarBuilder()
          .dir("./", 0755)
          .dir("./bin", 0750, 0, 10)
          .file("./bin/tool", "#!/bin/sh\n", 04755, 0, 0)
          .file("etc/owned", "x", 0640, 1000, 1001)
          .symlink("bin/sh", "/bin/tool")
          .symlink("etc/dangling", "../nowhere/at/all")
          .hardlink("bin/tool2", "bin/tool")
          .node("dev/null", AE_IFCHR, 1, 3)
          .node("run/fifo", AE_IFIFO, 0, 0)
          .file("attrs", "a", 0600, 0, 0,
                [](archive_entry* e) { archive_entry_xattr_add_entry(e, "user.kiln", "v", 1); })
          .finish();
  auto stats = apply(layer);
  ASSERT_TRUE(stats.has_value()) << stats.error().message();
  EXPECT_EQ(stats->entries, 10u);

  EXPECT_EQ(stat_of("bin").st_mode & 07777, 0750u);
  EXPECT_EQ(stat_of("bin").st_gid, 10u);
  EXPECT_EQ(stat_of("bin/tool").st_mode & 07777, 04755u);  // set-uid survives chown
  EXPECT_EQ(content("bin/tool"), "#!/bin/sh\n");
  EXPECT_EQ(stat_of("bin/tool").st_mtime, 1700000000);
  EXPECT_EQ(stat_of("etc/owned").st_uid, 1000u);
  EXPECT_EQ(stat_of("etc/owned").st_gid, 1001u);
  EXPECT_EQ(stat_of("etc").st_mode & 07777, 0755u);  // implicit parent
  EXPECT_TRUE(S_ISLNK(stat_of("bin/sh").st_mode));
  EXPECT_EQ(std::filesystem::read_symlink(in_root("bin/sh")), "/bin/tool");
  EXPECT_EQ(std::filesystem::read_symlink(in_root("etc/dangling")), "../nowhere/at/all");
  EXPECT_EQ(stat_of("bin/tool2").st_ino, stat_of("bin/tool").st_ino);
  EXPECT_EQ(stat_of("bin/tool").st_nlink, 2u);
  EXPECT_TRUE(S_ISCHR(stat_of("dev/null").st_mode));
  EXPECT_EQ(stat_of("dev/null").st_rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISFIFO(stat_of("run/fifo").st_mode));
}

// Apart from CreatesEveryEntryTypeWithMetadata: whether user.* xattrs can be set depends on the filesystem
// under the test's temporary directory (tmpfs before Linux 6.6 refuses them). Said with a skip, not by
// checking less.
TEST_F(LayerApplyTest, AppliesUserXattrs) {
  std::string probe = in_root("probe");
  UniqueFd probe_fd(::open(probe.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(probe_fd.valid()) << errno_text(errno);
  if (::fsetxattr(probe_fd.get(), "user.probe", "1", 1, 0) != 0) {
    GTEST_SKIP() << "the filesystem under " << root_ << " does not take user.* xattrs: " << errno_text(errno);
  }
  ASSERT_TRUE(apply(TarBuilder()
                        .file("attrs", "a", 0600, 0, 0,
                              [](archive_entry* e) { archive_entry_xattr_add_entry(e, "user.kiln", "v", 1); })
                        .finish())
                  .has_value());
  char value[8] = {};
  ASSERT_EQ(::getxattr(in_root("attrs").c_str(), "user.kiln", value, sizeof value), 1) << errno_text(errno);
  EXPECT_EQ(value[0], 'v');
}

TEST_F(LayerApplyTest, WhiteoutsHideLowerLayerEntriesOnly) {
  ASSERT_TRUE(apply(TarBuilder()
                        .file("a/keep", "1")
                        .file("a/gone", "2")
                        .file("b/deep/file", "3")
                        .file("c", "4")
                        .finish())
                  .has_value());
  auto upper = apply(TarBuilder()
                         .file("a/.wh.gone", "")
                         .dir("b")
                         .file(".wh.b", "")  // hides lower b, but b/ was also written by this layer...
                         .file("new", "5")
                         .file(".wh.new", "")      // same-layer entry: not hidden
                         .file(".wh.missing", "")  // nothing to hide
                         .file("nodir/.wh.x", "")  // parent absent: nothing to hide
                         .file(".wh.c", "")
                         .file(".wh..wh.plnk", "")  // AUFS bookkeeping, ignored
                         .finish());
  ASSERT_TRUE(upper.has_value()) << upper.error().message();
  EXPECT_TRUE(exists("a/keep"));
  EXPECT_FALSE(exists("a/gone"));
  EXPECT_FALSE(exists("a/.wh.gone"));
  EXPECT_TRUE(exists("b"));  // ... so b survives (same layer), its lower content too
  EXPECT_TRUE(exists("new"));
  EXPECT_FALSE(exists("c"));
  EXPECT_FALSE(exists("nodir"));
  EXPECT_FALSE(exists(".wh..wh.plnk"));
}

TEST_F(LayerApplyTest, WhiteoutRemovesDirectoryTrees) {
  ASSERT_TRUE(apply(TarBuilder().file("tree/a/b/c", "1").symlink("tree/l", "/").finish()).has_value());
  ASSERT_TRUE(apply(TarBuilder().file(".wh.tree", "").finish()).has_value());
  EXPECT_FALSE(exists("tree"));
}

TEST_F(LayerApplyTest, OpaqueDirectoryHidesLowerChildren) {
  ASSERT_TRUE(
      apply(TarBuilder().file("d/a", "1").file("d/sub/b", "2").file("other", "3").finish()).has_value());
  auto upper = apply(TarBuilder().dir("d", 0700).file("d/.wh..wh..opq", "").file("d/c", "new").finish());
  ASSERT_TRUE(upper.has_value()) << upper.error().message();
  EXPECT_FALSE(exists("d/a"));
  EXPECT_FALSE(exists("d/sub"));
  EXPECT_EQ(content("d/c"), "new");
  EXPECT_EQ(stat_of("d").st_mode & 07777, 0700u);
  EXPECT_TRUE(exists("other"));

  // Marker after a child of the same layer: the child stays.
  auto later = apply(TarBuilder().file("d/z", "z").file("d/.wh..wh..opq", "").finish());
  ASSERT_TRUE(later.has_value()) << later.error().message();
  EXPECT_TRUE(exists("d/z"));
  EXPECT_FALSE(exists("d/c"));
}

TEST_F(LayerApplyTest, LaterEntriesReplaceEarlierOnes) {
  ASSERT_TRUE(apply(TarBuilder()
                        .file("f2d/x", "1")
                        .file("d2f", "file")
                        .symlink("l2d", "/etc")
                        .file("link-to-me", "orig")
                        .finish())
                  .has_value());
  auto upper = apply(TarBuilder()
                         .file("f2d", "now a file")  // directory replaced by a file
                         .dir("d2f")                 // file replaced by a directory
                         .dir("l2d")                 // symlink replaced by a directory
                         .file("l2d/in", "in")
                         .file("link-to-me", "new")
                         .finish());
  ASSERT_TRUE(upper.has_value()) << upper.error().message();
  EXPECT_EQ(content("f2d"), "now a file");
  EXPECT_TRUE(S_ISDIR(stat_of("d2f").st_mode));
  EXPECT_TRUE(S_ISDIR(stat_of("l2d").st_mode));
  EXPECT_EQ(content("l2d/in"), "in");
  EXPECT_FALSE(exists("etc/in"));
  EXPECT_EQ(content("link-to-me"), "new");
}

TEST_F(LayerApplyTest, AbsoluteSymlinksResolveInsideTheRoot) {
  // usr-merge style: lib -> usr/lib, and an entry written through it lands inside the root.
  auto result = apply(TarBuilder()
                          .dir("usr/lib")
                          .symlink("lib", "usr/lib")
                          .symlink("abs", "/usr")
                          .file("lib/x.so", "so")
                          .file("abs/lib/y.so", "y")
                          .symlink("to-outside", outside_)  // an absolute host path means <root><path>
                          .file("to-outside/secret", "inside")
                          .finish());
  ASSERT_TRUE(result.has_value()) << result.error().message();
  EXPECT_EQ(content("usr/lib/x.so"), "so");
  EXPECT_EQ(content("usr/lib/y.so"), "y");
  EXPECT_EQ(content(outside_.substr(1) + "/secret"), "inside");
  expect_outside_untouched();
}

TEST_F(LayerApplyTest, ReplacingASymlinkNeverWritesThroughIt) {
  ASSERT_TRUE(apply(TarBuilder().symlink("victim", "../outside/secret").finish()).has_value());
  ASSERT_TRUE(apply(TarBuilder().file("victim", "overwritten").finish()).has_value());
  EXPECT_EQ(content("victim"), "overwritten");
  EXPECT_FALSE(S_ISLNK(stat_of("victim").st_mode));
  expect_outside_untouched();
}

TEST_F(LayerApplyTest, CompressedLayersHaveTheUncompressedDiffId) {
  auto build = [](TarBuilder::Filter filter) {
    return TarBuilder(filter).dir("d").file("d/f", std::string(100000, 'k')).symlink("s", "d/f").finish();
  };
  std::string plain = build(TarBuilder::Filter::kNone);
  Digest expected = Digest::of(plain);
  for (auto filter : {TarBuilder::Filter::kNone, TarBuilder::Filter::kGzip, TarBuilder::Filter::kZstd}) {
    std::string layer = build(filter);
    auto stats = apply(layer, {.expected_diff_id = expected});
    ASSERT_TRUE(stats.has_value()) << stats.error().message();
    EXPECT_EQ(stats->diff_id, expected);
    EXPECT_EQ(content("d/f").size(), 100000u);
  }
}

// --- hostile layers -------------------------------------------------------------------------------

TEST_F(LayerApplyTest, RejectsDotDotTraversal) {
  expect_rejected(TarBuilder().file("../outside/pwned", "x").finish(), LayerError::kPathTraversal);
  expect_rejected(TarBuilder().file("a/../../outside/pwned", "x").finish(), LayerError::kPathTraversal);
  expect_rejected(TarBuilder().symlink("a/../../outside/link", "x").finish(), LayerError::kPathTraversal);
}

TEST_F(LayerApplyTest, RejectsAbsolutePaths) {
  expect_rejected(TarBuilder().file(outside_ + "/pwned", "x").finish(), LayerError::kAbsolutePath);
}

TEST_F(LayerApplyTest, RejectsWritesThroughEscapingSymlinks) {
  expect_rejected(TarBuilder().symlink("esc", "../outside").file("esc/pwned", "x").finish(),
                  LayerError::kSymlinkEscape);
  expect_rejected(TarBuilder().symlink("deep", "/../../../..").file("deep/pwned", "x").finish(),
                  LayerError::kSymlinkEscape);
  expect_rejected(TarBuilder().dir("a").symlink("a/b", "../..").file("a/b/outside/pwned", "x").finish(),
                  LayerError::kSymlinkEscape);
  // A chain of links that climbs out step by step.
  expect_rejected(TarBuilder().symlink("one", "two/..").symlink("two", "..").file("one/pwned", "x").finish(),
                  LayerError::kSymlinkEscape);
}

TEST_F(LayerApplyTest, RejectsSymlinkSwappedInForADirectory) {
  ASSERT_TRUE(apply(TarBuilder().dir("dir").file("dir/ok", "1").finish()).has_value());
  expect_rejected(TarBuilder().symlink("dir", "../outside").file("dir/pwned", "x").finish(),
                  LayerError::kSymlinkEscape);
  // The same within one layer, and a whiteout reached through the swapped link.
  expect_rejected(TarBuilder().dir("d2").symlink("d2", "../../outside").file("d2/.wh.secret", "").finish(),
                  LayerError::kSymlinkEscape);
}

TEST_F(LayerApplyTest, RejectsSymlinkLoops) {
  expect_rejected(TarBuilder().symlink("a", "b").symlink("b", "a").file("a/x", "x").finish(),
                  LayerError::kSymlinkEscape);
}

TEST_F(LayerApplyTest, RejectsHardlinksOutsideTheRoot) {
  expect_rejected(TarBuilder().hardlink("hl", "../outside/secret").finish(), LayerError::kHardlinkEscape);
  expect_rejected(TarBuilder().hardlink("hl", outside_ + "/secret").finish(), LayerError::kHardlinkEscape);
  expect_rejected(TarBuilder().hardlink("hl", "does/not/exist").finish(), LayerError::kHardlinkEscape);
  expect_rejected(TarBuilder().dir("d").hardlink("hl", "d").finish(), LayerError::kHardlinkEscape);
  expect_rejected(TarBuilder().symlink("up", "..").hardlink("hl", "up/outside/secret").finish(),
                  LayerError::kSymlinkEscape);
}

TEST_F(LayerApplyTest, HardlinkThroughInRootSymlinkLinksTheFile) {
  auto result =
      apply(TarBuilder().file("real/f", "data").symlink("alias", "/real").hardlink("hl", "alias/f").finish());
  ASSERT_TRUE(result.has_value()) << result.error().message();
  EXPECT_EQ(stat_of("hl").st_ino, stat_of("real/f").st_ino);
}

TEST_F(LayerApplyTest, RejectsHugeSizeClaims) {
  const uint64_t ten_gib = uint64_t{10} << 30;
  std::string claim = raw_header("huge", ten_gib) + std::string(4096, 'A');
  // Over the limit: refused before a byte is written.
  expect_rejected(claim, LayerError::kTooLarge, {.max_bytes = uint64_t{1} << 30});
  EXPECT_FALSE(exists("huge"));
  // Under the limit: the data is not there, so the archive is truncated.
  expect_rejected(claim, LayerError::kCorrupt);
}

TEST_F(LayerApplyTest, RejectsLayersThatWriteMoreThanAllowed) {
  std::string layer = TarBuilder(TarBuilder::Filter::kGzip)
                          .file("a", std::string(600 << 10, '\0'))
                          .file("b", std::string(600 << 10, '\0'))
                          .finish();
  expect_rejected(layer, LayerError::kTooLarge, {.max_bytes = 1 << 20});
}

TEST_F(LayerApplyTest, RejectsTruncatedGzip) {
  std::string layer = TarBuilder(TarBuilder::Filter::kGzip).file("f", std::string(200000, 'x')).finish();
  // Random-ish content so the stream cannot be decoded past the cut.
  std::string noisy;
  for (int i = 0; i < 200000; ++i) noisy.push_back(static_cast<char>((i * 7919) ^ (i >> 3)));
  layer = TarBuilder(TarBuilder::Filter::kGzip).file("f", noisy).finish();
  expect_rejected(layer.substr(0, layer.size() / 2), LayerError::kCorrupt);
}

TEST_F(LayerApplyTest, RejectsGarbage) {
  expect_rejected(std::string(2048, '\x7f'), LayerError::kCorrupt);
}

TEST_F(LayerApplyTest, RejectsDiffIdMismatch) {
  std::string layer = TarBuilder().file("f", "x").finish();
  expect_rejected(layer, LayerError::kDiffIdMismatch, {.expected_diff_id = Digest::of("something else")});
}

TEST(ComputeDiffIdTest, HashesTheUncompressedStream) {
  std::string plain = TarBuilder().file("f", "hello").finish();
  std::string gzipped = TarBuilder(TarBuilder::Filter::kGzip).file("f", "hello").finish();
  UniqueFd fd(::memfd_create("layer", MFD_CLOEXEC));
  ASSERT_TRUE(write_all(fd.get(), gzipped).has_value());
  ::lseek(fd.get(), 0, SEEK_SET);
  auto diff_id = compute_diff_id(fd.get());
  ASSERT_TRUE(diff_id.has_value()) << diff_id.error().message();
  EXPECT_EQ(*diff_id, Digest::of(plain));
}

}  // namespace
}  // namespace kiln::image

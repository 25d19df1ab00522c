// metadata.db across versions: a file written by the first release (no version record) and one left at every
// earlier step of kMetadataDbSchema open with today's MetadataDb and keep their images, tags and digests.
#include "image/metadata.h"

#include <gtest/gtest.h>

#include "common/temp_dir.h"
#include "store/test_support.h"

namespace kiln::image {
namespace {

using store::testing::exec_raw;
using store::testing::query_integer_raw;

const std::string kImageA = "sha256:" + std::string(64, 'a');
const std::string kImageB = "sha256:" + std::string(64, 'b');
const std::string kManifest = "sha256:" + std::string(64, 'c');
const std::string kPulledAs = "docker.io/library/alpine@sha256:" + std::string(64, 'd');

// What the first release's MetadataDb::open ran (image/metadata.cc before issue 10), verbatim.
constexpr const char* kRelease010Open = R"(
    PRAGMA journal_mode=WAL;
    PRAGMA foreign_keys=ON;
    CREATE TABLE IF NOT EXISTS images (
      id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, created TEXT NOT NULL,
      size INTEGER NOT NULL, added_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS tags (
      ref TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE TABLE IF NOT EXISTS repo_digests (
      ref TEXT PRIMARY KEY, repository TEXT NOT NULL,
      image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE INDEX IF NOT EXISTS tags_by_image ON tags(image_id);
    CREATE INDEX IF NOT EXISTS repo_digests_by_image ON repo_digests(image_id);
  )";
// Its put_image, set_tag and add_repo_digest statements, verbatim.
constexpr const char* kRelease010PutImage = R"(
    INSERT INTO images (id, manifest_digest, created, size, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT(id) DO UPDATE SET manifest_digest = ?2, created = ?3, size = ?4)";
constexpr const char* kRelease010SetTag =
    "INSERT INTO tags (ref, image_id) VALUES (?1, ?2) ON CONFLICT(ref) DO UPDATE SET image_id = ?2";
constexpr const char* kRelease010AddRepoDigest = R"(
    INSERT INTO repo_digests (ref, repository, image_id) VALUES (?1, ?2, ?3)
    ON CONFLICT(ref) DO UPDATE SET image_id = ?3)";

// Rows the store at version i + 1 writes, in that version's SQL. A new step in kMetadataDbSchema needs a
// seed here (the tests below fail until it has one), so every step is tested from every earlier version.
const std::string kSeeds[] = {
    "INSERT INTO images VALUES ('" + kImageA + "', '" + kManifest +
        "', '2024-01-02T03:04:05Z', 1234, 1700000000);"
        "INSERT INTO tags VALUES ('docker.io/library/seed:1', '" +
        kImageA + "')",
};

Digest digest(const std::string& text) {
  return Digest::parse(text).value();
}

class MetadataDbTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>(TempDir::create("metadata-test-").value()); }
  std::string db_path() const { return dir_->path() + "/metadata.db"; }
  std::unique_ptr<TempDir> dir_;
};

TEST_F(MetadataDbTest, ListIsValid) {
  EXPECT_TRUE(store::validate(kMetadataDbSchema));
  ASSERT_EQ(std::size(kSeeds), kMetadataDbSchema.migrations.size())
      << "each metadata.db migration needs a seed";
}

TEST_F(MetadataDbTest, EveryEarlierVersionMigratesKeepingItsImages) {
  ASSERT_EQ(std::size(kSeeds), kMetadataDbSchema.migrations.size());
  for (size_t start = 0; start <= kMetadataDbSchema.migrations.size(); ++start) {
    SCOPED_TRACE(fmt::format("from version {}", start));
    auto built = store::testing::build_at_version(db_path(), kMetadataDbSchema, kSeeds, start);
    ASSERT_TRUE(built) << built.error().message();
    auto db = MetadataDb::open(db_path()).value();
    EXPECT_EQ(query_integer_raw(db_path(), "SELECT version FROM schema_version"),
              static_cast<int64_t>(kMetadataDbSchema.migrations.size()));
    EXPECT_EQ(db->list_images().value().size(), start >= 1 ? 1U : 0U);
    if (start >= 1) {
      auto image = db->find_image(digest(kImageA)).value();
      ASSERT_TRUE(image);
      EXPECT_EQ(image->size, 1234);
      EXPECT_EQ(image->added_at, 1700000000);
      EXPECT_EQ(db->tag_target("docker.io/library/seed:1").value(), digest(kImageA));
    }
  }
}

TEST_F(MetadataDbTest, UnversionedFileFromRelease010IsAdoptedWithItsRows) {
  ASSERT_EQ(exec_raw(db_path(), kRelease010Open), "");
  ASSERT_EQ(exec_raw(db_path(), kRelease010PutImage,
                     {std::string_view(kImageA), std::string_view(kManifest),
                      std::string_view("2024-01-02T03:04:05Z"), int64_t{1234}, int64_t{1700000000}}),
            "");
  ASSERT_EQ(exec_raw(db_path(), kRelease010PutImage,
                     {std::string_view(kImageB), std::string_view(kManifest), std::string_view(""),
                      int64_t{99}, int64_t{1700000100}}),
            "");
  ASSERT_EQ(exec_raw(db_path(), kRelease010SetTag,
                     {std::string_view("docker.io/library/alpine:3.20"), std::string_view(kImageA)}),
            "");
  ASSERT_EQ(exec_raw(db_path(), kRelease010AddRepoDigest,
                     {std::string_view(kPulledAs), std::string_view("docker.io/library/alpine"),
                      std::string_view(kImageA)}),
            "");
  ASSERT_EQ(query_integer_raw(db_path(), "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_version'"),
            0);

  {
    auto opened = MetadataDb::open(db_path());
    ASSERT_TRUE(opened) << opened.error().message();
    auto db = std::move(opened).value();
    auto images = db->list_images().value();
    ASSERT_EQ(images.size(), 2U);
    EXPECT_EQ(images[0].id, digest(kImageB));  // newest first
    auto image = db->find_image(digest(kImageA)).value();
    ASSERT_TRUE(image);
    EXPECT_EQ(image->manifest_digest, digest(kManifest));
    EXPECT_EQ(image->created, "2024-01-02T03:04:05Z");
    EXPECT_EQ(image->size, 1234);
    EXPECT_EQ(image->added_at, 1700000000);
    EXPECT_EQ(db->tags_of(digest(kImageA)).value(),
              std::vector<std::string>{"docker.io/library/alpine:3.20"});
    EXPECT_EQ(db->repo_digest_target(kPulledAs).value(), digest(kImageA));
    // Foreign keys still cascade: removing an image takes its tags and digests along.
    ASSERT_TRUE(db->remove_image(digest(kImageA)));
    EXPECT_FALSE(db->tag_target("docker.io/library/alpine:3.20").value());
    EXPECT_FALSE(db->repo_digest_target(kPulledAs).value());
  }
  EXPECT_EQ(query_integer_raw(db_path(), "SELECT version FROM schema_version"), 1);
  // The release still opens the adopted file (its CREATE ... IF NOT EXISTS finds every table).
  EXPECT_EQ(exec_raw(db_path(), kRelease010Open), "");
  EXPECT_EQ(query_integer_raw(db_path(), "SELECT COUNT(*) FROM images"), 1);
}

TEST_F(MetadataDbTest, NewerFileIsRefusedAndLeftAlone) {
  ASSERT_TRUE(MetadataDb::open(db_path()));
  int64_t newer = static_cast<int64_t>(kMetadataDbSchema.migrations.size()) + 1;
  ASSERT_EQ(exec_raw(db_path(), "UPDATE schema_version SET version = ?1", {newer}), "");
  auto refused = MetadataDb::open(db_path());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kUnsupported);
  EXPECT_NE(refused.error().message().find(fmt::format("metadata.db has schema version {}", newer)),
            std::string::npos)
      << refused.error().message();
  EXPECT_EQ(query_integer_raw(db_path(), "SELECT version FROM schema_version"), newer);
}

TEST_F(MetadataDbTest, TagOfUnknownImageIsRefused) {
  auto db = MetadataDb::open(db_path()).value();
  auto tagged = db->set_tag("docker.io/library/none:1", digest(kImageA));
  ASSERT_FALSE(tagged);
  EXPECT_EQ(tagged.error().category(), ErrorCategory::kFailedPrecondition);
}

}  // namespace
}  // namespace kiln::image

#include "common/sha256.h"

#include <gtest/gtest.h>

#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, IncrementalEqualsOneShotAndResets) {
  Sha256 hasher;
  hasher.update("a");
  hasher.update("bc");
  EXPECT_EQ(hasher.finish_hex(), sha256_hex("abc"));
  hasher.update("");
  EXPECT_EQ(hasher.finish_hex(), sha256_hex(""));
}

TEST(Sha256, HashesFiles) {
  auto dir = TempDir::create();
  ASSERT_TRUE(dir);
  std::string data(200000, 'z');
  ASSERT_TRUE(write_file_atomic(dir->path() + "/blob", data));
  EXPECT_EQ(*sha256_file_hex(dir->path() + "/blob"), sha256_hex(data));
  EXPECT_FALSE(sha256_file_hex(dir->path() + "/missing"));
}

}  // namespace
}  // namespace kiln

#include "image/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/child_process.h"
#include "common/temp_dir.h"
#include "image/test_tar_builder.h"

namespace kiln::image {
namespace {

std::string config_json(const std::vector<std::string>& layers) {
  Json diff_ids = Json::array();
  for (const std::string& layer : layers) diff_ids.push_back(Digest::of(layer).to_string());
  return Json{{"architecture", "amd64"},
              {"os", "linux"},
              {"created", "2024-01-02T03:04:05Z"},
              {"config", {{"Cmd", {"/bin/sh"}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
      .dump();
}

// A `docker save` archive (legacy layout: <id>/layer.tar), the second layer reached through a symlink as
// Docker writes deduplicated layers.
std::string docker_archive(const std::vector<std::string>& layers, const std::string& repo_tag) {
  TarBuilder tar;
  std::string config = config_json(layers);
  tar.file("cfg.json", config);
  Json layer_paths = Json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string dir = Digest::of(layers[i]).hex();
    tar.dir(dir).file(dir + "/VERSION", "1.0").file(dir + "/json", "{}");
    if (i == 1) {
      tar.file("real-layer.tar", layers[i]).symlink(dir + "/layer.tar", "../real-layer.tar");
    } else {
      tar.file(dir + "/layer.tar", layers[i]);
    }
    layer_paths.push_back(dir + "/layer.tar");
  }
  Json manifest = Json::array({{{"Config", "cfg.json"}, {"RepoTags", {repo_tag}}, {"Layers", layer_paths}}});
  tar.file("manifest.json", manifest.dump());
  return tar.finish();
}

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(*TempDir::create("kiln-store-test-"));
    auto store = ImageStore::open({.root = dir_->path() + "/root"});
    ASSERT_TRUE(store.has_value()) << store.error().message();
    store_ = std::move(*store);
  }

  std::string write_temp(const std::string& name, const std::string& data) {
    std::string path = dir_->path() + "/" + name;
    EXPECT_TRUE(write_file_atomic(path, data).has_value());
    return path;
  }

  // Extracts the image's EROFS rootfs with fsck.erofs and returns the directory.
  std::string extract_rootfs(std::string_view name) {
    NullProgress progress;
    auto image = store_->rootfs_image(name, progress);
    EXPECT_TRUE(image.has_value()) << image.error().message();
    if (!image) return "";
    std::string out = dir_->path() + "/extract-" + std::to_string(extract_count_++);
    auto result = run_command_checked({"fsck.erofs", "--extract=" + out, *image});
    EXPECT_TRUE(result.has_value()) << result.error().message();
    return out;
  }

  size_t blob_count() {
    return store_->list().has_value()
               ? std::distance(std::filesystem::directory_iterator(store_->dir() + "/blobs/sha256"),
                               std::filesystem::directory_iterator())
               : 0;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ImageStore> store_;
  int extract_count_ = 0;
};

TEST_F(ImageStoreTest, ImportsARootfsTarballAsOneLayerImage) {
  std::string tarball = TarBuilder(TarBuilder::Filter::kGzip)
                            .dir("./")
                            .dir("./bin")
                            .file("./bin/hello", "hi", 0755)
                            .symlink("./bin/sh", "hello")
                            .finish();
  auto ref = ImageRef::parse("local/rootfs:1");
  auto id = store_->import(write_temp("rootfs.tar.gz", tarball), *ref);
  ASSERT_TRUE(id.has_value()) << id.error().message();

  auto details = store_->inspect("local/rootfs:1");
  ASSERT_TRUE(details.has_value()) << details.error().message();
  EXPECT_EQ(details->summary.record.id, *id);
  ASSERT_EQ(details->manifest.layers.size(), 1u);
  EXPECT_EQ(details->manifest.layers[0].media_type, media_type::kDockerLayerGzip);
  EXPECT_EQ(details->config.diff_ids.size(), 1u);
  EXPECT_EQ(details->summary.tags, std::vector<std::string>{"docker.io/local/rootfs:1"});
  // Built as the image arrived, so the first VM or container from it unpacks nothing.
  EXPECT_TRUE(details->rootfs_path.has_value());

  std::string tree = extract_rootfs("local/rootfs:1");
  EXPECT_EQ(*read_file(tree + "/bin/hello"), "hi");
  EXPECT_EQ(std::filesystem::read_symlink(tree + "/bin/sh"), "hello");
  EXPECT_EQ(*store_->resolve(id->short_id()), *id);
}

TEST_F(ImageStoreTest, LoadsDockerArchivesAndAppliesLayersInOrder) {
  std::string lower = TarBuilder().file("etc/keep", "k").file("etc/gone", "g").file("opq/old", "o").finish();
  std::string upper = TarBuilder()
                          .file("etc/.wh.gone", "")
                          .dir("opq")
                          .file("opq/.wh..wh..opq", "")
                          .file("opq/new", "n")
                          .hardlink("etc/keep-link", "etc/keep")
                          .finish();
  NullProgress progress;
  auto ids = store_->load(write_temp("saved.tar", docker_archive({lower, upper}, "app:v1")), {}, progress);
  ASSERT_TRUE(ids.has_value()) << ids.error().message();
  ASSERT_EQ(ids->size(), 1u);
  EXPECT_EQ(*store_->resolve("app:v1"), ids->front());
  EXPECT_EQ(*store_->resolve("docker.io/library/app:v1"), ids->front());
  // Bookkeeping files (VERSION, json) did not stay behind as blobs: manifest + config + 2 layers.
  EXPECT_EQ(blob_count(), 4u);

  std::string tree = extract_rootfs("app:v1");
  EXPECT_EQ(*read_file(tree + "/etc/keep"), "k");
  EXPECT_FALSE(std::filesystem::exists(tree + "/etc/gone"));
  EXPECT_FALSE(std::filesystem::exists(tree + "/opq/old"));
  EXPECT_EQ(*read_file(tree + "/opq/new"), "n");
  // fsck.erofs extracts hard links as copies; the image itself shares one inode (NID) with 2 links.
  NullProgress quiet;
  std::string image = *store_->rootfs_image("app:v1", quiet);
  auto nid_line = [&](const std::string& path) {
    std::string dump = run_command_checked({"dump.erofs", "--path=" + path, image}).value_or("");
    return dump.substr(dump.find("NID:"), dump.find("Layout") - dump.find("NID:"));
  };
  EXPECT_EQ(nid_line("/etc/keep"), nid_line("/etc/keep-link"));
  EXPECT_NE(nid_line("/etc/keep").find("Links: 2"), std::string::npos) << nid_line("/etc/keep");
}

TEST_F(ImageStoreTest, RejectsArchivesWhoseLayersDoNotMatchTheConfig) {
  std::string layer = TarBuilder().file("f", "x").finish();
  std::string archive = docker_archive({layer}, "bad:1");
  // Same archive, but the layer content swapped after the config named its diff_id.
  std::string tampered =
      TarBuilder()
          .file("cfg.json", config_json({layer}))
          .file("l.tar", TarBuilder().file("f", "evil").finish())
          .file("manifest.json", R"([{"Config":"cfg.json","RepoTags":["bad:1"],"Layers":["l.tar"]}])")
          .finish();
  NullProgress progress;
  auto result = store_->load(write_temp("tampered.tar", tampered), {}, progress);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message().find("the config says"), std::string::npos) << result.error().message();
  EXPECT_FALSE(store_->resolve("bad:1").has_value());
}

TEST_F(ImageStoreTest, SaveThenLoadRoundTripsIntoAnotherStore) {
  std::string layer = TarBuilder(TarBuilder::Filter::kGzip).file("data", "payload").finish();
  auto id = store_->import(write_temp("l.tar.gz", layer), *ImageRef::parse("example.com/team/app:2"));
  ASSERT_TRUE(id.has_value()) << id.error().message();
  std::string saved = dir_->path() + "/out.tar";
  auto result = store_->save({"example.com/team/app:2"}, saved);
  ASSERT_TRUE(result.has_value()) << result.error().message();

  auto other = ImageStore::open({.root = dir_->path() + "/other"});
  ASSERT_TRUE(other.has_value());
  NullProgress progress;
  auto ids = (*other)->load(saved, {}, progress);
  ASSERT_TRUE(ids.has_value()) << ids.error().message();
  EXPECT_EQ(ids->front(), *id);
  EXPECT_EQ(*(*other)->resolve("example.com/team/app:2"), *id);

  // The saved tar is an OCI layout too; extracted as a directory it loads the same image.
  std::string layout = dir_->path() + "/layout";
  std::filesystem::create_directories(layout);
  ASSERT_TRUE(run_command_checked({"tar", "-C", layout, "-xf", saved}).has_value());
  std::filesystem::remove(layout + "/manifest.json");
  auto third = ImageStore::open({.root = dir_->path() + "/third"});
  auto from_layout = (*third)->load(layout, {}, progress);
  ASSERT_TRUE(from_layout.has_value()) << from_layout.error().message();
  EXPECT_EQ(from_layout->front(), *id);
  EXPECT_EQ(*(*third)->resolve("example.com/team/app:2"), *id);
}

TEST_F(ImageStoreTest, OciLayoutWithWrongDigestIsRejected) {
  std::string layer = TarBuilder().file("f", "x").finish();
  std::string config = config_json({layer});
  Digest layer_digest = Digest::of(layer);
  Json manifest = {{"schemaVersion", 2},
                   {"mediaType", media_type::kOciManifest},
                   {"config",
                    {{"mediaType", media_type::kOciConfig},
                     {"digest", Digest::of(config).to_string()},
                     {"size", config.size()}}},
                   {"layers",
                    {{{"mediaType", media_type::kOciLayer},
                      {"digest", layer_digest.to_string()},
                      {"size", layer.size()}}}}};
  std::string manifest_text = manifest.dump();
  Json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", media_type::kOciManifest},
                   {"digest", Digest::of(manifest_text).to_string()},
                   {"size", manifest_text.size()},
                   {"annotations", {{"org.opencontainers.image.ref.name", "v1"}}}}}}};
  auto layout = [&](const std::string& layer_bytes) {
    return TarBuilder()
        .file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")
        .file("index.json", index.dump())
        .file("blobs/sha256/" + Digest::of(config).hex(), config)
        .file("blobs/sha256/" + Digest::of(manifest_text).hex(), manifest_text)
        .file("blobs/sha256/" + layer_digest.hex(), layer_bytes)
        .finish();
  };
  NullProgress progress;
  auto bad =
      store_->load(write_temp("bad.tar", layout(TarBuilder().file("f", "tampered").finish())), {}, progress);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find(layer_digest.to_string()), std::string::npos) << bad.error().message();

  auto good = store_->load(write_temp("good.tar", layout(layer)), {.repository = "localhost/oci"}, progress);
  ASSERT_TRUE(good.has_value()) << good.error().message();
  EXPECT_EQ(*store_->resolve("localhost/oci:v1"), good->front());
}

TEST_F(ImageStoreTest, TagRemoveAndPrune) {
  std::string layer = TarBuilder().file("f", "1").finish();
  auto id = store_->import(write_temp("a.tar", layer), *ImageRef::parse("one:1"));
  ASSERT_TRUE(id.has_value());
  ASSERT_TRUE(store_->tag("one:1", *ImageRef::parse("two:2")).has_value());
  EXPECT_EQ(store_->list()->front().tags.size(), 2u);
  NullProgress progress;
  ASSERT_TRUE(store_->rootfs_image("one:1", progress).has_value());

  // By ID with tags in two repositories: refused without force.
  EXPECT_EQ(store_->remove(id->short_id(), false).error().category(), ErrorCategory::kFailedPrecondition);
  auto untag = store_->remove("one:1", false);
  ASSERT_TRUE(untag.has_value()) << untag.error().message();
  EXPECT_TRUE(untag->deleted.empty());
  EXPECT_FALSE(store_->resolve("one:1").has_value());
  auto last = store_->remove("two:2", false);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->deleted, std::vector<Digest>{*id});
  EXPECT_EQ(blob_count(), 0u);
  EXPECT_TRUE(std::filesystem::is_empty(store_->dir() + "/rootfs"));

  // Prune drops untagged images only, unless asked for all.
  auto kept =
      store_->import(write_temp("b.tar", TarBuilder().file("f", "2").finish()), *ImageRef::parse("kept:1"));
  auto dangling = store_->import(write_temp("c.tar", TarBuilder().file("f", "3").finish()), std::nullopt);
  ASSERT_TRUE(kept.has_value() && dangling.has_value());
  auto pruned = store_->prune(false);
  ASSERT_TRUE(pruned.has_value()) << pruned.error().message();
  EXPECT_EQ(pruned->deleted_images, std::vector<Digest>{*dangling});
  EXPECT_EQ(pruned->blobs_removed, 3u);
  EXPECT_TRUE(store_->resolve("kept:1").has_value());
  ASSERT_TRUE(store_->prune(true).has_value());
  EXPECT_TRUE(store_->list()->empty());
  EXPECT_EQ(blob_count(), 0u);
}

TEST_F(ImageStoreTest, WritableLayerIsASparseExt4File) {
  std::string path = dir_->path() + "/writable.ext4";
  ASSERT_TRUE(ImageStore::create_writable_layer(path, uint64_t{256} << 20).has_value());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 256 << 20);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{32} << 20);
  auto header = run_command_checked({"dumpe2fs", "-h", path});
  ASSERT_TRUE(header.has_value()) << header.error().message();
  EXPECT_NE(header->find("Filesystem magic number:  0xEF53"), std::string::npos);
  EXPECT_FALSE(ImageStore::create_writable_layer(path, uint64_t{256} << 20).has_value());  // never clobbers

  // Directories made in it up front, root's, empty.
  std::string with_dirs = dir_->path() + "/layer-dirs.ext4";
  ASSERT_TRUE(ImageStore::create_writable_layer(with_dirs, uint64_t{64} << 20, {"upper", "work"}));
  auto listing = run_command_checked({"debugfs", "-R", "ls -l /", with_dirs});
  ASSERT_TRUE(listing.has_value()) << listing.error().message();
  EXPECT_NE(listing->find(" upper"), std::string::npos) << *listing;
  EXPECT_NE(listing->find(" work"), std::string::npos) << *listing;
  EXPECT_NE(listing->find("40755 (2)      0      0"), std::string::npos) << *listing;
  EXPECT_FALSE(ImageStore::create_writable_layer(dir_->path() + "/bad.ext4", uint64_t{64} << 20, {"../x"}));
}

TEST_F(ImageStoreTest, AFullSizeWritableLayerTakesLittleHostDisk) {
  // A container's default layer: 10 GiB of address space, a few MiB of host disk (its journal is not
  // written out: 69 MiB per container before).
  std::string path = dir_->path() + "/layer.ext4";
  ASSERT_TRUE(ImageStore::create_writable_layer(path, uint64_t{10} << 30).has_value());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{16} << 20);
  auto checked = run_command({"e2fsck", "-n", "-f", path});
  ASSERT_TRUE(checked.has_value());
  EXPECT_EQ(checked->status.code(), 0) << checked->stdout_text << checked->stderr_text;
}

}  // namespace
}  // namespace kiln::image

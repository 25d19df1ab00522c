// VolumeManager on a real kiln.db and real directories: dockerd's name rules and messages, idempotent create,
// removal refused while a container uses a volume, what a kill -9 can leave behind cleared at open, prune and
// sizes.
#include "daemon/volumes/volume_manager.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/rfc3339.h"
#include "common/temp_dir.h"
#include "daemon/state/schema.h"

namespace kiln::daemon::volumes {
namespace {

namespace fs = std::filesystem;

class VolumeManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("kiln-volumes-test-").value());
    reopen();
  }

  // As a restarted kilnd: a new connection to kiln.db and a new manager over the same directory.
  void reopen() {
    manager_.reset();
    db_.reset();
    db_ = store::Database::open(dir_->path() + "/kiln.db", kKilnDbSchema).value();
    auto opened = VolumeManager::open(*db_, volumes_dir(), &events_);
    ASSERT_TRUE(opened) << opened.error().message();
    manager_ = std::move(opened).value();
  }

  std::string volumes_dir() const { return dir_->path() + "/volumes"; }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(volumes_dir())) names.push_back(entry.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  VolumeRecord create(const std::string& name, std::map<std::string, std::string> labels = {}) {
    auto created = manager_->create({.name = name, .labels = std::move(labels)});
    EXPECT_TRUE(created) << created.error().message();
    return created.value_or(VolumeRecord{});
  }

  std::unique_ptr<TempDir> dir_;
  EventBus events_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<VolumeManager> manager_;
};

TEST_F(VolumeManagerTest, NamesFollowDockerdsRuleAndWords) {
  for (const char* good : {"ab", "a1", "9.x", "Data_dir-2.0", "a..b"})
    EXPECT_TRUE(validate_volume_name(good)) << good;
  for (const char* bad : {"..", ".ab", "-ab", "_ab", "a/b", "../x", "a b", "a:b", "é1", ""})
    EXPECT_FALSE(validate_volume_name(bad)) << bad;

  auto slash = manager_->create({.name = "a/b"});
  ASSERT_FALSE(slash);
  EXPECT_EQ(slash.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(
      slash.error().message(),
      "create a/b: \"a/b\" includes invalid characters for a local volume name, only "
      "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute "
      "path");
  auto short_name = manager_->create({.name = "a"});
  ASSERT_FALSE(short_name);
  EXPECT_EQ(short_name.error().message(),
            "create a: volume name is too short, names should be at least two alphanumeric characters");
  EXPECT_FALSE(manager_->create({.name = ".."}));
  EXPECT_TRUE(entries().empty());  // nothing made, nothing outside
  EXPECT_FALSE(fs::exists(dir_->path() + "/x"));
}

TEST_F(VolumeManagerTest, CreateMakesTheDirectoryAndIsIdempotentPerName) {
  VolumeRecord first = create("data", {{"team", "a"}, {"empty", ""}});
  EXPECT_EQ(first.name, "data");
  EXPECT_EQ(first.driver, "local");
  EXPECT_EQ(first.scope, "local");
  EXPECT_FALSE(first.anonymous);
  EXPECT_TRUE(parse_rfc3339(first.created_at).has_value()) << first.created_at;
  EXPECT_EQ(manager_->data_path("data"), volumes_dir() + "/data/_data");
  struct stat info {};
  ASSERT_EQ(::stat(manager_->data_path("data").c_str(), &info), 0);
  EXPECT_TRUE(S_ISDIR(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0755U);

  // Again, with other labels and the driver spelt out: the same volume, as it was.
  auto again = manager_->create({.name = "data", .driver = "local", .labels = {{"other", "1"}}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->labels, first.labels);
  EXPECT_EQ(again->created_at, first.created_at);
  EXPECT_EQ(manager_->list().value().size(), 1U);
  EXPECT_EQ(manager_->get("data").value().labels.at("empty"), "");

  auto missing = manager_->get("nosuch");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(missing.error().message(), "get nosuch: no such volume");
}

TEST_F(VolumeManagerTest, AnEmptyNameGivesAnAnonymousVolumeWithADockerId) {
  auto created = manager_->create({});
  ASSERT_TRUE(created);
  EXPECT_EQ(created->name.size(), 64U);
  EXPECT_EQ(created->name.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_TRUE(created->anonymous);
  EXPECT_EQ(created->labels.at(std::string(kAnonymousLabel)), "");
  auto for_container = manager_->create({.name = "named-anon", .anonymous = true});
  ASSERT_TRUE(for_container);
  EXPECT_TRUE(for_container->anonymous);
  EXPECT_NE(manager_->create({}).value().name, created->name);
}

TEST_F(VolumeManagerTest, OtherDriversAndDriverOptionsAreRefusedAndMakeNothing) {
  auto plugin = manager_->create({.name = "v1", .driver = "foo"});
  ASSERT_FALSE(plugin);
  EXPECT_EQ(plugin.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(plugin.error().message(),
            "create v1: error looking up volume plugin foo: plugin \"foo\" not found");
  auto options = manager_->create({.name = "v2", .driver_opts = {{"type", "tmpfs"}, {"device", "tmpfs"}}});
  ASSERT_FALSE(options);
  EXPECT_EQ(options.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_NE(options.error().message().find("driver options are not supported"), std::string::npos);
  EXPECT_NE(options.error().message().find("device, type"), std::string::npos);
  EXPECT_TRUE(entries().empty());
  EXPECT_TRUE(manager_->list().value().empty());
  // An existing volume with the wrong driver: the driver lookup still fails first, as dockerd's.
  create("v3");
  EXPECT_EQ(manager_->create({.name = "v3", .driver = "foo"}).error().category(), ErrorCategory::kNotFound);
}

TEST_F(VolumeManagerTest, RemoveRefusesAVolumeInUseEvenForced) {
  create("shared");
  create("free");
  manager_->set_users([] { return VolumeUsers{{"shared", {"c1", "c2"}}, {"free", {}}}; });
  auto refused = manager_->remove("shared", false);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_EQ(refused.error().message(), "remove shared: volume is in use - [c1, c2]");
  EXPECT_FALSE(manager_->remove("shared", true));
  EXPECT_TRUE(fs::exists(manager_->data_path("shared")));

  std::ofstream(manager_->data_path("free") + "/file") << "data";
  ASSERT_TRUE(manager_->remove("free", false));
  EXPECT_FALSE(fs::exists(volumes_dir() + "/free"));
  EXPECT_EQ(entries(), std::vector<std::string>{"shared"});
  auto gone = manager_->remove("free", false);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().category(), ErrorCategory::kNotFound);
  EXPECT_EQ(gone.error().message(), "get free: no such volume");
  EXPECT_TRUE(manager_->remove("free", true));  // force: a missing volume is no error

  // Once no container uses it, it goes; a new one of the same name starts empty.
  manager_->set_users([] { return VolumeUsers{}; });
  ASSERT_TRUE(manager_->remove("shared", false));
  create("free");
  EXPECT_TRUE(fs::is_empty(manager_->data_path("free")));
}

TEST_F(VolumeManagerTest, AHeldVolumeIsInUseUntilReleased) {
  create("pinned");
  manager_->set_users([] { return VolumeUsers{{"pinned", {"c1"}}}; });
  manager_->hold("pinned", "c2");
  manager_->hold("pinned", "c1");  // already a user: listed once
  manager_->hold("pinned", "c2");
  EXPECT_EQ(manager_->users().at("pinned"), (std::vector<std::string>{"c1", "c2"}));
  manager_->set_users(nullptr);
  auto refused = manager_->remove("pinned", false);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message(), "remove pinned: volume is in use - [c1, c2]");
  manager_->release("pinned", "c1");
  EXPECT_EQ(manager_->remove("pinned", false).error().message(), "remove pinned: volume is in use - [c2]");
  EXPECT_TRUE(manager_->prune([](const VolumeRecord&) { return true; }).value().removed.empty());
  manager_->release("pinned", "c2");
  manager_->release("pinned", "c2");  // no longer held: nothing to do
  EXPECT_TRUE(manager_->users().empty());
  EXPECT_TRUE(manager_->remove("pinned", false));
}

TEST_F(VolumeManagerTest, VolumesSurviveARestart) {
  create("kept", {{"a", "b"}});
  std::ofstream(manager_->data_path("kept") + "/file") << "data";
  reopen();
  auto kept = manager_->get("kept");
  ASSERT_TRUE(kept) << kept.error().message();
  EXPECT_EQ(kept->labels.at("a"), "b");
  std::ifstream file(manager_->data_path("kept") + "/file");
  std::string text;
  file >> text;
  EXPECT_EQ(text, "data");
}

TEST_F(VolumeManagerTest, WhatAKilledCreateOrRemoveLeftIsClearedAtOpen) {
  create("kept");
  create("lost");
  std::ofstream(manager_->data_path("kept") + "/file") << "data";
  // A create killed before its rename, and one killed after the rename but before the row; a remove killed
  // after its row went (before or after the rename); and a row whose directory vanished.
  fs::create_directories(volumes_dir() + "/.creating-0011223344556677/_data");
  fs::create_directories(volumes_dir() + "/orphan/_data");
  fs::create_directories(volumes_dir() + "/.removing-8899aabbccddeeff/_data");
  std::ofstream(volumes_dir() + "/.removing-8899aabbccddeeff/_data/big") << "old data";
  fs::remove_all(volumes_dir() + "/lost");
  reopen();
  EXPECT_EQ(entries(), (std::vector<std::string>{"kept", "lost"}));
  EXPECT_TRUE(fs::exists(manager_->data_path("kept") + "/file"));
  EXPECT_TRUE(fs::is_directory(manager_->data_path("lost")));
  EXPECT_EQ(manager_->list().value().size(), 2U);
  // The orphan's name is free again.
  EXPECT_TRUE(manager_->create({.name = "orphan"}));
}

TEST_F(VolumeManagerTest, ListIsOldestFirst) {
  create("zz");
  create("aa");
  create("mm");
  auto listed = manager_->list().value();
  ASSERT_EQ(listed.size(), 3U);
  EXPECT_EQ(listed[0].name, "zz");
  EXPECT_EQ(listed[1].name, "aa");
  EXPECT_EQ(listed[2].name, "mm");
}

TEST_F(VolumeManagerTest, SizeCountsFilesOnceAndFollowsNoSymlink) {
  create("sized");
  std::string data = manager_->data_path("sized");
  std::ofstream(data + "/a") << std::string(1000, 'x');
  fs::create_directories(data + "/sub");
  std::ofstream(data + "/sub/b") << std::string(24, 'y');
  ASSERT_EQ(::link((data + "/a").c_str(), (data + "/sub/a-again").c_str()), 0);
  fs::create_directory_symlink("/usr", data + "/usr");  // 4 bytes as a symlink, nothing of /usr
  EXPECT_EQ(manager_->size("sized").value(), 1000 + 24 + 4);
  EXPECT_EQ(manager_->size("nosuch").value(), 0);
}

TEST_F(VolumeManagerTest, PruneRemovesUnusedSelectedVolumesAndCountsTheirBytes) {
  create("used");
  create("unused");
  std::ofstream(manager_->data_path("unused") + "/f") << std::string(100, 'z');
  auto anonymous = manager_->create({.anonymous = true}).value();
  create("labelled", {{"keep", "1"}});
  manager_->set_users([] { return VolumeUsers{{"used", {"c1"}}}; });

  auto only_anonymous = manager_->prune([](const VolumeRecord& v) { return v.anonymous; }).value();
  EXPECT_EQ(only_anonymous.removed, std::vector<std::string>{anonymous.name});
  EXPECT_EQ(only_anonymous.space_reclaimed, 0U);

  auto unlabelled = manager_->prune([](const VolumeRecord& v) { return !v.labels.contains("keep"); }).value();
  EXPECT_EQ(unlabelled.removed, std::vector<std::string>{"unused"});
  EXPECT_EQ(unlabelled.space_reclaimed, 100U);
  EXPECT_EQ(entries(), (std::vector<std::string>{"labelled", "used"}));
}

TEST_F(VolumeManagerTest, PublishesDockerdsVolumeEvents) {
  create("evented");
  ASSERT_TRUE(manager_->remove("evented", false));
  ASSERT_TRUE(manager_->prune([](const VolumeRecord&) { return true; }));
  auto events = events_.wait_after(0, std::chrono::milliseconds(0));
  ASSERT_EQ(events.size(), 3U);
  EXPECT_EQ(events[0].type, "volume");
  EXPECT_EQ(events[0].action, "create");
  EXPECT_EQ(events[0].id, "evented");
  EXPECT_EQ(events[0].attributes, (Json{{"driver", "local"}}));
  EXPECT_EQ(events[1].action, "destroy");
  EXPECT_EQ(events[2].action, "prune");
  EXPECT_EQ(events[2].attributes, (Json{{"reclaimed", "0"}}));
}

}  // namespace
}  // namespace kiln::daemon::volumes

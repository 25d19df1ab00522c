// kiln.db across versions: a file written by the first release, and one left at every earlier step of
// kKilnDbSchema, open with today's VmStore and keep their VMs.
#include "daemon/state/schema.h"

#include <gtest/gtest.h>

#include "common/temp_dir.h"
#include "daemon/state/vm_store.h"
#include "store/test_support.h"

namespace kiln::daemon {
namespace {

using store::testing::exec_raw;
using store::testing::query_integer_raw;

// A VM record as kilnd 0.1.0 stored it (to_storage_json(...).dump()).
constexpr std::string_view kRelease010Record =
    R"({"cpus":2,"created_at":"2026-11-26T03:04:05Z","disk_mib":2048,"finished_at":"","folders":[{"flags":4,)"
    R"("guest_path":"/mnt/hgfs/srv","host_path":"/srv","id":"0","read_only":true}],"folders_enabled":true,)"
    R"("id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","kernel":"","labels":{"team":"a"},)"
    R"("memory_mib":1024,"monitor_pid":0,"name":"web","source":{"kind":"image","value":)"
    R"("docker.io/library/alpine:3.20"},"started_at":"","state":"stopped","state_reason":"","tag":"prod"})";

// What kilnd 0.1.0 ran on one connection to create kiln.db (daemon/state/sqlite_db.cc and vm_store.cc
// before issue 10), statement for statement, less the version read that found none.
constexpr const char* kRelease010Open = R"(
    PRAGMA journal_mode=WAL;
    PRAGMA synchronous=NORMAL;
    PRAGMA foreign_keys=ON;
    CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
    BEGIN IMMEDIATE;
    CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL, created_seq INTEGER NOT NULL);
    DELETE FROM schema_version;
    INSERT INTO schema_version VALUES (1);
    COMMIT;
  )";
constexpr const char* kRelease010Insert =
    "INSERT INTO vms (id, name, record, created_seq) VALUES (?1, ?2, ?3,"
    " (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM vms))";

// Rows a kilnd at version i + 1 writes, in that version's SQL. A new step in kKilnDbSchema needs a seed
// here (the test below fails until it has one), so every step is tested from every earlier version.
constexpr std::string_view kSeeds[] = {
    R"(INSERT INTO vms (id, name, record, created_seq) VALUES ('aaaa', 'seed-1',)"
    R"( '{"id":"aaaa","name":"seed-1","state":"stopped","labels":{"v":"1"}}', 1))",
    R"(INSERT INTO containers (id, name, record, created_seq) VALUES ('cccc', 'seed-2',)"
    R"( '{"id":"cccc","name":"seed-2","state":"exited","exit_code":3}', 1))",
    R"(INSERT INTO volumes (id, name, record, created_seq) VALUES ('seed-3', 'seed-3',)"
    R"( '{"name":"seed-3","driver":"local","created_at":"2026-11-30T00:00:00Z","labels":{"v":"3"}}', 1))",
    R"(INSERT INTO networks (id, name, record, created_seq) VALUES ('dddd', 'seed-4',)"
    R"( '{"id":"dddd","name":"seed-4","driver":"bridge","bridge":"br-dddd"}', 1))",
};

class KilnDbSchemaTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>(TempDir::create("kiln-db-test-").value()); }
  std::string db_path() const { return dir_->path() + "/kiln.db"; }
  std::unique_ptr<TempDir> dir_;
};

TEST_F(KilnDbSchemaTest, ListIsValid) {
  EXPECT_TRUE(store::validate(kKilnDbSchema));
  ASSERT_EQ(std::size(kSeeds), kKilnDbSchema.migrations.size()) << "each kiln.db migration needs a seed here";
}

TEST_F(KilnDbSchemaTest, EveryEarlierVersionMigratesKeepingItsVms) {
  ASSERT_EQ(std::size(kSeeds), kKilnDbSchema.migrations.size());
  for (size_t start = 0; start <= kKilnDbSchema.migrations.size(); ++start) {
    SCOPED_TRACE(fmt::format("from version {}", start));
    auto built = store::testing::build_at_version(db_path(), kKilnDbSchema, kSeeds, start);
    ASSERT_TRUE(built) << built.error().message();
    auto vms = VmStore::open(dir_->path()).value();
    EXPECT_EQ(query_integer_raw(db_path(), "SELECT version FROM schema_version"),
              static_cast<int64_t>(kKilnDbSchema.migrations.size()));
    EXPECT_EQ(vms->list().value().size(), std::min<size_t>(start, 1));
    EXPECT_EQ(query_integer_raw(db_path(), "SELECT COUNT(*) FROM containers"), start >= 2 ? 1 : 0);
    EXPECT_EQ(query_integer_raw(db_path(), "SELECT COUNT(*) FROM volumes"), start >= 3 ? 1 : 0);
    EXPECT_EQ(query_integer_raw(db_path(), "SELECT COUNT(*) FROM networks"), start >= 4 ? 1 : 0);
    if (start >= 1) {
      VmRecord seed = vms->resolve("seed-1").value();
      EXPECT_EQ(seed.id, "aaaa");
      EXPECT_EQ(seed.state, VmState::kStopped);
      EXPECT_EQ(seed.labels.at("v"), "1");
    }
  }
}

TEST_F(KilnDbSchemaTest, FileFromRelease010OpensWithItsVms) {
  ASSERT_EQ(exec_raw(db_path(), kRelease010Open), "");  // one connection, as the release's
  std::string second_record(kRelease010Record);
  second_record.replace(second_record.find(R"("name":"web")"), 12, R"("name":"db")");
  ASSERT_EQ(exec_raw(db_path(), kRelease010Insert,
                     {std::string_view("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                      std::string_view("web"), kRelease010Record}),
            "");
  ASSERT_EQ(exec_raw(db_path(), kRelease010Insert,
                     {std::string_view("fedcba"), std::string_view("db"), std::string_view(second_record)}),
            "");

  auto opened = VmStore::open(dir_->path());
  ASSERT_TRUE(opened) << opened.error().message();
  auto vms = std::move(opened).value();
  auto listed = vms->list().value();
  ASSERT_EQ(listed.size(), 2U);
  EXPECT_EQ(listed[0].name, "web");
  EXPECT_EQ(listed[1].name, "db");
  VmRecord web = vms->resolve("web").value();
  EXPECT_EQ(web.cpus, 2U);
  EXPECT_EQ(web.memory_mib, 1024U);
  EXPECT_EQ(web.source.kind, RootSource::Kind::kImage);
  EXPECT_EQ(web.source.value, "docker.io/library/alpine:3.20");
  EXPECT_EQ(web.labels.at("team"), "a");
  EXPECT_EQ(web.tag, "prod");
  ASSERT_EQ(web.folders.size(), 1U);
  EXPECT_EQ(web.folders[0].host_path, "/srv");
  EXPECT_EQ(web.state, VmState::kStopped);
  EXPECT_EQ(vms->resolve("fedc").value().name, "db");

  // New rows go after the old ones, and the name constraint still holds.
  VmRecord third = web;
  third.id = "1111";
  third.name = "third";
  ASSERT_TRUE(vms->insert(third));
  EXPECT_EQ(vms->list().value().back().name, "third");
  third.id = "2222";
  third.name = "web";
  EXPECT_EQ(vms->insert(third).error().category(), ErrorCategory::kAlreadyExists);
  vms.reset();
  EXPECT_EQ(query_integer_raw(db_path(), "SELECT COUNT(*) FROM schema_version"), 1);
  EXPECT_EQ(query_integer_raw(db_path(), "SELECT version FROM schema_version"),
            static_cast<int64_t>(kKilnDbSchema.migrations.size()));
}

TEST_F(KilnDbSchemaTest, NewerFileIsRefusedNamingBothVersions) {
  ASSERT_TRUE(VmStore::open(dir_->path()));
  int64_t newer = static_cast<int64_t>(kKilnDbSchema.migrations.size()) + 6;
  ASSERT_EQ(exec_raw(db_path(), "UPDATE schema_version SET version = ?1", {newer}), "");
  auto refused = VmStore::open(dir_->path());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kUnsupported);
  EXPECT_NE(refused.error().message().find(fmt::format("kiln.db has schema version {}, newer than", newer)),
            std::string::npos)
      << refused.error().message();
  EXPECT_NE(refused.error().message().find(fmt::format("understands ({})", kKilnDbSchema.migrations.size())),
            std::string::npos)
      << refused.error().message();
  EXPECT_EQ(query_integer_raw(db_path(), "SELECT version FROM schema_version"), newer);
}

}  // namespace
}  // namespace kiln::daemon

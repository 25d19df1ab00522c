#include "store/database.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "common/temp_dir.h"
#include "store/test_support.h"

namespace kiln::store {
namespace {

// A history shaped like kiln.db's future: a table, a child table with a cascading foreign key, then a
// rebuild of the parent table (SQLite's ALTER TABLE recipe), which must not cascade into the child.
constexpr Migration kToyMigrations[] = {
    {1, "vms", "CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT NOT NULL)"},
    {2, "containers in VMs",
     "CREATE TABLE containers (id TEXT PRIMARY KEY, vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE "
     "CASCADE)"},
    {3, "VM labels, unique names",
     "CREATE TABLE vms_new (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, labels TEXT NOT NULL DEFAULT "
     "'{}');"
     "INSERT INTO vms_new (id, name) SELECT id, name FROM vms;"
     "DROP TABLE vms;"
     "ALTER TABLE vms_new RENAME TO vms;"},
};
// Rows written right after the file reaches version i + 1, in that version's SQL.
constexpr std::string_view kToySeeds[] = {
    "INSERT INTO vms VALUES ('v1', 'one')",
    "INSERT INTO containers VALUES ('c1', 'v1')",
    "INSERT INTO vms (id, name, labels) VALUES ('v3', 'three', '{\"a\":\"b\"}')",
};
static_assert(std::size(kToySeeds) == std::size(kToyMigrations));

const Schema kToy{.name = "toy.db", .migrations = kToyMigrations};

using testing::first_steps;

int64_t count_rows(Database& db, std::string_view table) {
  auto session = db.lock();
  auto query = session.prepare(fmt::format("SELECT COUNT(*) FROM {}", table)).value();
  EXPECT_TRUE(query.step().value());
  return query.integer(0);
}

bool table_exists(Database& db, std::string_view table) {
  auto session = db.lock();
  auto query = session.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1").value();
  query.bind(1, table);
  return query.step().value();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>(TempDir::create("store-test-").value()); }
  std::string path() const { return dir_->path() + "/toy.db"; }
  std::unique_ptr<TempDir> dir_;
};

TEST_F(DatabaseTest, NewFileGetsEveryStep) {
  auto db = Database::open(path(), kToy).value();
  EXPECT_EQ(db->schema_version(), 3);
  EXPECT_TRUE(table_exists(*db, "containers"));
  EXPECT_FALSE(table_exists(*db, "vms_new"));
}

TEST_F(DatabaseTest, MigratesFromEveryEarlierVersionKeepingRows) {
  for (size_t start = 0; start < kToy.migrations.size(); ++start) {
    SCOPED_TRACE(fmt::format("from version {}", start));
    auto built = testing::build_at_version(path(), kToy, kToySeeds, start);
    ASSERT_TRUE(built) << built.error().message();
    auto db = Database::open(path(), kToy).value();
    EXPECT_EQ(db->schema_version(), 3);
    EXPECT_EQ(count_rows(*db, "vms"), start >= 1 ? 1 : 0);
    EXPECT_EQ(count_rows(*db, "containers"), start >= 2 ? 1 : 0);
    if (start >= 1) {
      auto session = db->lock();
      auto query = session.prepare("SELECT name, labels FROM vms WHERE id = 'v1'").value();
      ASSERT_TRUE(query.step().value());
      EXPECT_EQ(query.text(0), "one");
      EXPECT_EQ(query.text(1), "{}");
    }
    // The latest version's own rows go in, and the rebuilt table enforces its new constraint.
    ASSERT_TRUE(db->lock().exec(kToySeeds[2]));
    EXPECT_EQ(db->lock().exec("INSERT INTO vms (id, name) VALUES ('v4', 'three')").error().category(),
              ErrorCategory::kAlreadyExists);
    db.reset();
    // Reopening at the latest version changes nothing.
    db = Database::open(path(), kToy).value();
    EXPECT_EQ(count_rows(*db, "vms"), start >= 1 ? 2 : 1);
  }
}

TEST_F(DatabaseTest, FailingStepRollsBackEveryPendingStep) {
  {
    auto db = Database::open(path(), first_steps(kToy, 1)).value();
    ASSERT_TRUE(db->lock().exec(kToySeeds[0]));
  }
  const Migration broken[] = {kToyMigrations[0],
                              kToyMigrations[1],
                              {3, "broken", "CREATE TABLE half (x); INSERT INTO missing VALUES (1)"}};
  auto failed = Database::open(path(), Schema{.name = "toy.db", .migrations = broken});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().category(), ErrorCategory::kInternal);
  EXPECT_NE(failed.error().message().find("migration to version 3 (broken)"), std::string::npos)
      << failed.error().message();
  EXPECT_NE(failed.error().message().find("toy.db"), std::string::npos) << failed.error().message();

  auto db = Database::open(path(), first_steps(kToy, 1)).value();
  EXPECT_EQ(db->schema_version(), 1);
  EXPECT_FALSE(table_exists(*db, "containers"));  // step 2 succeeded, but in the same transaction
  EXPECT_FALSE(table_exists(*db, "half"));
  EXPECT_EQ(count_rows(*db, "vms"), 1);
}

TEST_F(DatabaseTest, StepLeavingABrokenForeignKeyIsRolledBack) {
  ASSERT_TRUE(Database::open(path(), first_steps(kToy, 2)));
  const Migration orphaning[] = {kToyMigrations[0],
                                 kToyMigrations[1],
                                 {3, "orphan", "INSERT INTO containers VALUES ('c9', 'no-such-vm')"}};
  auto failed = Database::open(path(), Schema{.name = "toy.db", .migrations = orphaning});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().category(), ErrorCategory::kInternal);
  EXPECT_NE(failed.error().message().find("table containers"), std::string::npos) << failed.error().message();
  auto db = Database::open(path(), first_steps(kToy, 2)).value();
  EXPECT_EQ(db->schema_version(), 2);
  EXPECT_EQ(count_rows(*db, "containers"), 0);
}

TEST_F(DatabaseTest, NewerVersionIsRefusedAndTheFileLeftAlone) {
  {
    auto db = Database::open(path(), kToy).value();
    ASSERT_TRUE(db->lock().exec(kToySeeds[2]));
  }
  std::string before = read_bytes(path());
  ASSERT_FALSE(before.empty());
  auto refused = Database::open(path(), first_steps(kToy, 2));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kUnsupported);
  EXPECT_NE(refused.error().message().find("toy.db has schema version 3, newer than"), std::string::npos)
      << refused.error().message();
  EXPECT_NE(refused.error().message().find("understands (2); upgrade Kiln"), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(read_bytes(path()), before);
  auto db = Database::open(path(), kToy).value();
  EXPECT_EQ(db->schema_version(), 3);
  EXPECT_EQ(count_rows(*db, "vms"), 1);
}

TEST_F(DatabaseTest, ListWithGapOrWrongStartIsRejectedBeforeTouchingTheFile) {
  const Migration gap[] = {kToyMigrations[0], kToyMigrations[2]};
  auto result = Database::open(path(), Schema{.name = "toy.db", .migrations = gap});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kInternal);
  EXPECT_NE(result.error().message().find("entry 2 has version 3, expected 2"), std::string::npos)
      << result.error().message();
  EXPECT_FALSE(std::ifstream(path()).good());

  const Migration from_zero[] = {{0, "zero", "CREATE TABLE a (x)"}};
  EXPECT_FALSE(validate(Schema{.name = "toy.db", .migrations = from_zero}));
  const Migration duplicate[] = {kToyMigrations[0], kToyMigrations[0]};
  EXPECT_FALSE(validate(Schema{.name = "toy.db", .migrations = duplicate}));
  const Migration empty_sql[] = {{1, "nothing", ""}};
  EXPECT_FALSE(validate(Schema{.name = "toy.db", .migrations = empty_sql}));
  EXPECT_TRUE(validate(kToy));
}

TEST_F(DatabaseTest, UnversionedFileIsRefusedUnlessTheSchemaAdoptsIt) {
  ASSERT_EQ(testing::exec_raw(path(),
                              "CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT NOT NULL);"
                              "INSERT INTO vms VALUES ('a', 'b')"),
            "");
  auto refused = Database::open(path(), kToy);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kUnsupported);
  EXPECT_NE(refused.error().message().find("no schema version"), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(
      testing::query_integer_raw(path(), "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_version'"),
      0);

  Schema adopting = kToy;
  adopting.unversioned_version = 1;
  auto db = Database::open(path(), adopting).value();
  EXPECT_EQ(db->schema_version(), 3);
  EXPECT_EQ(count_rows(*db, "vms"), 1);
  EXPECT_TRUE(table_exists(*db, "containers"));
  db.reset();
  // Recorded now: the plain schema opens it.
  EXPECT_EQ(Database::open(path(), kToy).value()->schema_version(), 3);
}

TEST_F(DatabaseTest, TransactionRollsBackUnlessCommitted) {
  auto db = Database::open(path(), kToy).value();
  {
    auto session = db->lock();
    auto transaction = session.begin().value();
    ASSERT_TRUE(session.exec(kToySeeds[2]));
    EXPECT_EQ(session.begin().error().category(), ErrorCategory::kInternal);  // no nesting
  }
  EXPECT_EQ(count_rows(*db, "vms"), 0);
  {
    auto session = db->lock();
    auto transaction = session.begin().value();
    ASSERT_TRUE(session.exec(kToySeeds[2]));
    ASSERT_TRUE(transaction.commit());
    EXPECT_FALSE(transaction.commit());
  }
  EXPECT_EQ(count_rows(*db, "vms"), 1);
}

TEST_F(DatabaseTest, ErrorsAreCategorizedAndNameTheDatabase) {
  auto db = Database::open(path(), kToy).value();
  auto session = db->lock();
  ASSERT_TRUE(session.exec(kToySeeds[2]));
  auto duplicate = session.exec(kToySeeds[2]);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().category(), ErrorCategory::kAlreadyExists);
  EXPECT_EQ(duplicate.error().message().rfind("toy.db: ", 0), 0U) << duplicate.error().message();

  auto orphan = session.exec("INSERT INTO containers VALUES ('c', 'no-such-vm')");
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error().category(), ErrorCategory::kFailedPrecondition);  // foreign keys are on

  auto bad_sql = session.prepare("SELEKT 1");
  ASSERT_FALSE(bad_sql);
  EXPECT_EQ(bad_sql.error().category(), ErrorCategory::kInternal);

  auto statement = session.prepare("SELECT ?1").value();
  statement.bind(1, "x").bind(2, int64_t{1});
  auto bad_bind = statement.step();
  ASSERT_FALSE(bad_bind);
  EXPECT_NE(bad_bind.error().message().find("bind parameter 2"), std::string::npos)
      << bad_bind.error().message();
}

TEST_F(DatabaseTest, LockHeldByAnotherConnectionIsUnavailable) {
  auto holder = Database::open(path(), kToy).value();
  auto waiter =
      Database::open(path(), kToy, OpenOptions{.busy_timeout = std::chrono::milliseconds(0)}).value();
  auto holding = holder->lock();
  auto transaction = holding.begin().value();
  auto waiting = waiter->lock();
  auto blocked = waiting.begin();
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().category(), ErrorCategory::kUnavailable);
}

TEST_F(DatabaseTest, ColumnsReadTextIntegersAndNulls) {
  auto db = Database::open(path(), kToy).value();
  auto session = db->lock();
  auto query = session.prepare("SELECT ?1, ?2, ?3").value();
  std::string with_nul("a\0b", 3);
  query.bind(1, with_nul).bind(2, int64_t{-7}).bind_null(3);
  ASSERT_TRUE(query.step().value());
  EXPECT_EQ(query.text(0), with_nul);
  EXPECT_EQ(query.integer(1), -7);
  EXPECT_TRUE(query.is_null(2));
  EXPECT_EQ(query.text(2), "");
  EXPECT_FALSE(query.is_null(0));
  EXPECT_FALSE(query.step().value());
}

}  // namespace
}  // namespace kiln::store

#include "daemon/state/vm_store.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/temp_dir.h"

namespace kiln::daemon {
namespace {

VmRecord make_vm(std::string id, std::string name) {
  VmRecord vm;
  vm.id = std::move(id);
  vm.name = std::move(name);
  vm.state = VmState::kStopped;
  vm.labels = {{"team", "a"}};
  vm.folders = {
      {.id = "0", .host_path = "/srv", .guest_path = "/mnt/hgfs/srv", .read_only = true, .flags = 4}};
  return vm;
}

class VmStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>(TempDir::create("vm-store-test-").value());
    store_ = VmStore::open(dir_->path()).value();
  }
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<VmStore> store_;
};

TEST_F(VmStoreTest, RoundTripsEveryField) {
  VmRecord vm = make_vm("abcdef0123", "web");
  vm.source = {.kind = RootSource::Kind::kTarball, .value = "/tmp/root.tar"};
  vm.monitor_pid = 42;
  ASSERT_TRUE(store_->insert(vm));
  auto got = store_->get("abcdef0123").value();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->name, "web");
  EXPECT_EQ(got->labels.at("team"), "a");
  EXPECT_EQ(got->source.kind, RootSource::Kind::kTarball);
  EXPECT_EQ(got->monitor_pid, 42);
  ASSERT_EQ(got->folders.size(), 1U);
  EXPECT_TRUE(got->folders[0].read_only);
  EXPECT_EQ(got->folders[0].flags, 4);
}

TEST_F(VmStoreTest, DuplicateNameIsAlreadyExists) {
  ASSERT_TRUE(store_->insert(make_vm("aaaa", "web")));
  auto second = store_->insert(make_vm("bbbb", "web"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().category(), ErrorCategory::kAlreadyExists);
}

TEST_F(VmStoreTest, ResolvesByIdNameAndUniquePrefix) {
  ASSERT_TRUE(store_->insert(make_vm("abc111", "one")));
  ASSERT_TRUE(store_->insert(make_vm("abc222", "two")));
  EXPECT_EQ(store_->resolve("one").value().id, "abc111");
  EXPECT_EQ(store_->resolve("abc222").value().name, "two");
  EXPECT_EQ(store_->resolve("abc1").value().name, "one");
  EXPECT_EQ(store_->resolve("abc").error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(store_->resolve("nope").error().category(), ErrorCategory::kNotFound);
}

TEST_F(VmStoreTest, ListKeepsCreationOrderAndSurvivesReopen) {
  ASSERT_TRUE(store_->insert(make_vm("ff", "z")));
  ASSERT_TRUE(store_->insert(make_vm("00", "a")));
  store_.reset();
  store_ = VmStore::open(dir_->path()).value();
  auto vms = store_->list().value();
  ASSERT_EQ(vms.size(), 2U);
  EXPECT_EQ(vms[0].name, "z");
  EXPECT_EQ(vms[1].name, "a");
}

TEST_F(VmStoreTest, ConcurrentInsertsOfOneNameHaveOneWinner) {
  std::atomic<int> winners = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      if (store_->insert(make_vm("id" + std::to_string(i), "same"))) ++winners;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(winners.load(), 1);
}

TEST_F(VmStoreTest, UpdateAndRemove) {
  VmRecord vm = make_vm("aa", "x");
  ASSERT_TRUE(store_->insert(vm));
  vm.state = VmState::kRunning;
  ASSERT_TRUE(store_->update(vm));
  EXPECT_EQ(store_->get("aa").value()->state, VmState::kRunning);
  ASSERT_TRUE(store_->remove("aa"));
  EXPECT_FALSE(store_->get("aa").value());
  EXPECT_EQ(store_->update(vm).error().category(), ErrorCategory::kNotFound);
}

}  // namespace
}  // namespace kiln::daemon

#include "engine/snapshot/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::engine::snapshot {
namespace {

using ::testing::HasSubstr;

VmSpec sample_spec() {
  return {.name = "web",
          .cpus = 2,
          .memory_mib = 512,
          .kernel = "/kit/kernel",
          .disks = {{"/vms/web/root.ext4", false}, {"/images/a.erofs", true}},
          .root_disk = 0,
          .shares = {{"kilnshare0", "/home/me/src", true}}};
}

Manifest sample_manifest() {
  return {.engine = "qemu",
          .engine_version = "7.2.22",
          .created_at = "2025-01-31T12:00:00Z",
          .vm = shape_of(sample_spec(), "console=ttyS0 kiln.root=kiln-disk0"),
          .files = {{"state", {"state.qemu", 123456}}}};
}

TEST(SnapshotManifest, RoundTripsThroughJson) {
  Manifest manifest = sample_manifest();
  Json json = to_json(manifest);
  EXPECT_EQ(json["format"], "kiln-snapshot");
  EXPECT_EQ(json["version"], 2);
  EXPECT_EQ(json["vm"]["disks"], Json({"/vms/web/root.ext4", "/images/a.erofs"}));
  EXPECT_EQ(json["files"]["state"]["bytes"], 123456);
  auto parsed = manifest_from_json(parse_json(json.dump()).value());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(*parsed, manifest);
}

TEST(SnapshotManifest, TemplatesRecordTheirKeyMemoryHashAndSlotLayout) {
  Manifest manifest = sample_manifest();
  manifest.role = "template";
  manifest.template_key = "4f2a";
  manifest.files["memory"] = {"memory", 512 << 20, std::string(64, 'a')};
  Json json = to_json(manifest);
  EXPECT_EQ(json["role"], "template");
  EXPECT_EQ(json["template_key"], "4f2a");
  EXPECT_EQ(json["vm"]["disk_read_only"], Json({false, true}));
  EXPECT_EQ(json["files"]["memory"]["sha256"], std::string(64, 'a'));
  auto parsed = manifest_from_json(json);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(*parsed, manifest);
  // A template is forked from, never restored as a suspended VM.
  auto restored = check_restorable(manifest, sample_spec(), "qemu");
  ASSERT_FALSE(restored);
  EXPECT_THAT(restored.error().message(), HasSubstr("is a template, not a suspended VM"));

  Json bad_hash = json;
  bad_hash["files"]["memory"]["sha256"] = "xyz";
  EXPECT_FALSE(manifest_from_json(bad_hash));
  Json bad_role = json;
  bad_role["role"] = "other";
  EXPECT_FALSE(manifest_from_json(bad_role));
  Json uneven = json;
  uneven["vm"]["disk_read_only"] = Json({true});
  EXPECT_FALSE(manifest_from_json(uneven));
}

TEST(SnapshotManifest, ASuspendWithAMemoryFileIsRestorable) {
  Manifest manifest = sample_manifest();
  manifest.role = "suspend-memory";
  manifest.files["memory"] = {"memory", 512 << 20, ""};
  auto parsed = manifest_from_json(to_json(manifest));
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(*parsed, manifest);
  EXPECT_TRUE(check_restorable(manifest, sample_spec(), "qemu"));
  // A role this build does not know is refused with its name, before anything is restored.
  manifest.role = "suspend-remote";
  auto refused = check_restorable(manifest, sample_spec(), "qemu");
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("role \"suspend-remote\""));
}

TEST(SnapshotManifest, RoundTripsThroughADirectory) {
  auto dir = TempDir::create("kiln-manifest-test-");
  ASSERT_TRUE(dir);
  ASSERT_TRUE(write_manifest(dir->path(), sample_manifest()));
  auto read = read_manifest(dir->path());
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(*read, sample_manifest());
}

TEST(SnapshotManifest, MissingManifestIsNotFound) {
  auto dir = TempDir::create("kiln-manifest-test-");
  ASSERT_TRUE(dir);
  auto read = read_manifest(dir->path());
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().category(), ErrorCategory::kNotFound);
  EXPECT_THAT(read.error().message(), HasSubstr("holds no VM snapshot"));
}

TEST(SnapshotManifest, OtherVersionsAreRefusedBeforeTheirFieldsAreRead) {
  Json json = to_json(sample_manifest());
  json["version"] = 1;
  json.erase("vm");  // a newer format may have moved anything
  auto parsed = manifest_from_json(json);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(parsed.error().message(), HasSubstr("snapshot format version 1 is not supported"));
}

TEST(SnapshotManifest, MalformedManifestsAreInvalid) {
  auto refuse = [](Json json, std::string_view why) {
    auto parsed = manifest_from_json(json);
    ASSERT_FALSE(parsed) << json.dump();
    EXPECT_EQ(parsed.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_THAT(parsed.error().message(), HasSubstr(why));
  };
  Json good = to_json(sample_manifest());
  refuse(Json::array(), "not a kiln-snapshot manifest");
  Json other = good;
  other["format"] = "docker";
  refuse(other, "not a kiln-snapshot manifest");
  Json no_cpus = good;
  no_cpus["vm"].erase("cpus");
  refuse(no_cpus, "missing field \"cpus\"");
  Json bad_memory = good;
  bad_memory["vm"]["memory_mib"] = "512";
  refuse(bad_memory, "\"memory_mib\" has the wrong type");
  Json negative = good;
  negative["vm"]["memory_mib"] = -1;
  refuse(negative, "\"memory_mib\" is negative");
  Json escaping = good;
  escaping["files"]["state"]["name"] = "../../etc/passwd";
  refuse(escaping, "bad name");
}

TEST(SnapshotManifest, RestorableOnlyOntoTheSameHardware) {
  Manifest manifest = sample_manifest();
  EXPECT_TRUE(check_restorable(manifest, sample_spec(), "qemu"));
  // What the guest does not see may differ: name, runtime dir, kernel path, initrd.
  VmSpec moved = sample_spec();
  moved.name = "web-restored";
  moved.runtime_dir = "/run/kiln/vm-2";
  moved.kernel = "/kit2/kernel";
  EXPECT_TRUE(check_restorable(manifest, moved, "qemu"));

  auto refuse = [&](const VmSpec& spec, std::string_view engine, std::string_view why) {
    auto checked = check_restorable(manifest, spec, engine);
    ASSERT_FALSE(checked);
    EXPECT_EQ(checked.error().category(), ErrorCategory::kFailedPrecondition);
    EXPECT_THAT(checked.error().message(), HasSubstr(why));
  };
  refuse(sample_spec(), "builtin", "saved by the qemu engine; it cannot be restored by builtin");
  VmSpec spec = sample_spec();
  spec.memory_mib = 256;
  refuse(spec, "qemu", "memory 512 MiB (saved) vs 256 MiB");
  spec = sample_spec();
  spec.cpus = 4;
  refuse(spec, "qemu", "cpus 2 (saved) vs 4");
  spec = sample_spec();
  spec.disks.pop_back();
  refuse(spec, "qemu", "disks [/vms/web/root.ext4, /images/a.erofs] (saved) vs [/vms/web/root.ext4]");
  spec = sample_spec();
  spec.shares[0].read_only = false;
  refuse(spec, "qemu", "shares");
}

TEST(SnapshotManifest, StateFileMustHaveTheRecordedSize) {
  auto dir = TempDir::create("kiln-manifest-test-");
  ASSERT_TRUE(dir);
  Manifest manifest = sample_manifest();
  manifest.files["state"].bytes = 5;
  auto missing = state_file_path(dir->path(), manifest, "state");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message(), HasSubstr("is missing"));
  ASSERT_TRUE(write_file_atomic(dir->path() + "/state.qemu", "QEV"));
  auto truncated = state_file_path(dir->path(), manifest, "state");
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(truncated.error().message(), HasSubstr("is damaged: 3 bytes, the manifest says 5"));
  ASSERT_TRUE(write_file_atomic(dir->path() + "/state.qemu", "QEVM!"));
  auto found = state_file_path(dir->path(), manifest, "state");
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_EQ(*found, dir->path() + "/state.qemu");
  EXPECT_FALSE(state_file_path(dir->path(), manifest, "memory"));
}

}  // namespace
}  // namespace kiln::engine::snapshot

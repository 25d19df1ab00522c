// VM fork against real VMs (QEMU, TCG here): a template is booted once and saved with its RAM in a file;
// clones resume from it copy-on-write. Proves the template's state is in every clone, clones do not share
// writes, the template's file is never written, a clone does not boot again, its RAM mapping is the file
// (private dirty memory well below its size), the template never read a disk slot, each clone uses its own
// disk in the slot, a clone forked with placeholders (a warm pool's) takes its disks and share entries
// while it runs, also once adopted, and bad templates are refused before a QEMU starts. Prints the figures
// in docs/benchmarks.md.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "agent/client/agent_connection.h"
#include "common/child_process.h"
#include "common/sha256.h"
#include "common/temp_dir.h"
#include "engine/engine_factory.h"
#include "engine/qemu/qemu_vm.h"
#include "engine/snapshot/manifest.h"
#include "engine/template_guest.h"
#include "guest/guest_kit.h"
#include "guest_command.h"

namespace kiln::engine {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr uint64_t kMemoryMib = 256;
constexpr uint64_t kSlotBytes = uint64_t{1} << 30;

// Runs `script` with sh in the guest; its stdout, or an error if it failed.
Result<std::string> run(agent::AgentConnection& agent, const std::string& script) {
  return vm_tests::run_in_guest(agent, script);
}

bool some_process_mentions(const std::string& needle) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = read_file(entry.path().string() + "/cmdline", 1 << 20);
    if (cmdline && cmdline->find(needle) != std::string::npos) return true;
  }
  return false;
}

// The kB figures of `pid`'s mapping of `path` in /proc/PID/smaps: {Rss, Private_Dirty}; {-1,-1} if unmapped.
std::pair<long, long> mapping_kib(pid_t pid, const std::string& path) {
  auto smaps = read_file(fmt::format("/proc/{}/smaps", pid), 64 << 20);
  if (!smaps) return {-1, -1};
  size_t at = smaps->find(" " + path + "\n");
  if (at == std::string::npos) return {-1, -1};
  auto field = [&](std::string_view name) {
    size_t found = smaps->find(std::string(name) + ":", at);
    return found == std::string::npos ? -1L : std::stol(smaps->substr(found + name.size() + 1));
  };
  return {field("Rss"), field("Private_Dirty")};
}

long ms_since(Clock::time_point start) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

class EngineFork : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { build_template(false); }

  // `aged`: saved at a guest uptime of 20 s right after a CRNG reseed (see EngineForkRandomness).
  static void build_template(bool aged) {
    auto kit = guest::resolve_guest_kit({});
    ASSERT_TRUE(kit) << kit.error().message();
    kit_ = *kit;
    auto engine = make_engine({.name = "qemu"});
    ASSERT_TRUE(engine) << engine.error().message();
    engine_ = std::move(*engine).release();
    auto dir = TempDir::create("kiln-fork-template-");
    ASSERT_TRUE(dir);
    template_dir_ = new TempDir(std::move(*dir));  // NOLINT(cppcoreguidelines-owning-memory): suite lifetime
    auto runtime = TempDir::create("kiln-fork-template-run-");
    ASSERT_TRUE(runtime);
    VmSpec spec = template_spec(runtime->path());
    auto started = Clock::now();
    auto built = engine_->build_template(spec, template_dir_->path(), [&](VmInstance& vm) -> Result<void> {
      auto& qemu = dynamic_cast<qemu::QemuVm&>(vm);
      auto settle = [&](agent::AgentConnection& agent) -> Result<void> {
        // In guest RAM only (tmpfs): what every clone must find.
        KILN_TRY(run(agent, "mkdir -p /tmp/t && echo template-token-4711 > /tmp/t/token"));
        if (!aged) return ok();
        KILN_TRY(run(agent, "sleep 18"));
        KILN_TRY(agent.clone_init({.hostname = "template"}));
        return ok();
      };
      KILN_TRY(settle_template_guest(vm, 120s, settle));
      stats_before_save_ = KILN_TRY(qemu.qmp().execute("query-blockstats"));
      return ok();
    });
    ASSERT_TRUE(built) << built.error().message();
    build_ms_ = ms_since(started);
    template_ = new VmTemplate(*built);  // NOLINT(cppcoreguidelines-owning-memory): suite lifetime
  }
  static void TearDownTestSuite() {
    delete template_;      // NOLINT(cppcoreguidelines-owning-memory)
    delete template_dir_;  // NOLINT(cppcoreguidelines-owning-memory)
    delete engine_;        // NOLINT(cppcoreguidelines-owning-memory)
    template_ = nullptr;
    template_dir_ = nullptr;
    engine_ = nullptr;
  }

  // Container-shaped: slot 0 read-only (an image), slot 1 writable (a layer), one 9p share slot (its
  // directory in the runtime dir, empty; the template's guest never mounts it).
  static VmSpec template_spec(const std::string& runtime_dir) {
    fs::create_directories(runtime_dir + "/share");
    return {.name = "fork-template",
            .memory_mib = kMemoryMib,
            .kernel = kit_.kernel,
            .initrd = kit_.initramfs,
            .runtime_dir = runtime_dir,
            .disks = {{.read_only = true, .placeholder_bytes = kSlotBytes},
                      {.read_only = false, .placeholder_bytes = kSlotBytes}},
            .shares = {{.tag = "kilnshare0", .host_path = runtime_dir + "/share"}},
            .die_with_launcher = true};
  }

  void SetUp() override {
    auto scratch = TempDir::create("kiln-fork-clone-");
    ASSERT_TRUE(scratch);
    scratch_.emplace(std::move(*scratch));
  }

  // A clone's spec: its own runtime dir and disks in the template's slots.
  VmSpec clone_spec(const std::string& name) {
    std::string dir = scratch_->path() + "/" + name;
    fs::create_directories(dir);
    std::string image = dir + "/image.img", layer = dir + "/layer.img";
    fs::copy_file(disk_image(), image);
    EXPECT_TRUE(write_file_atomic(layer, ""));
    fs::resize_file(layer, 64 << 20);
    VmSpec spec = template_spec(dir);
    spec.name = name;
    spec.disks = {{.path = image, .read_only = true}, {.path = layer}};
    return spec;
  }

  // An ext4 image holding /hello with the text "from-the-clone-disk" (made once).
  std::string disk_image() {
    std::string path = scratch_->path() + "/source.img";
    if (!fs::exists(path)) make_ext4(path, "from-the-clone-disk\n");
    return path;
  }

  // A 16 MiB ext4 image at `path` holding /hello with `hello`.
  void make_ext4(const std::string& path, const std::string& hello) {
    std::string content = path + ".content";
    fs::create_directories(content);
    EXPECT_TRUE(write_file_atomic(content + "/hello", hello));
    auto made = run_command_checked({"mkfs.ext4", "-q", "-F", "-d", content, path, "16M"});
    EXPECT_TRUE(made) << made.error().message();
  }

  std::unique_ptr<agent::AgentConnection> connect(VmInstance& vm) {
    auto channel = vm.connect_agent();
    EXPECT_TRUE(channel) << channel.error().message();
    if (!channel) return nullptr;
    auto connection = agent::AgentConnection::connect(std::move(*channel), 60s);
    EXPECT_TRUE(connection) << connection.error().message();
    return connection ? std::move(*connection) : nullptr;
  }

  static inline guest::GuestKit kit_;
  static inline Engine* engine_ = nullptr;
  static inline TempDir* template_dir_ = nullptr;
  static inline VmTemplate* template_ = nullptr;
  static inline Json stats_before_save_;
  static inline long build_ms_ = 0;
  std::optional<TempDir> scratch_;
};

TEST_F(EngineFork, TemplateNeverReadItsPlaceholderSlots) {
  ASSERT_TRUE(stats_before_save_.is_array());
  ASSERT_EQ(stats_before_save_.size(), 2u) << stats_before_save_.dump();
  for (const auto& device : stats_before_save_) {
    EXPECT_EQ(device["stats"]["rd_operations"], 0) << device.dump();
    EXPECT_EQ(device["stats"]["wr_operations"], 0) << device.dump();
  }
  auto manifest = snapshot::read_manifest(template_->dir());
  ASSERT_TRUE(manifest) << manifest.error().message();
  EXPECT_EQ(manifest->role, "template");
  EXPECT_EQ(manifest->template_key, template_->key());
  EXPECT_EQ(manifest->vm.disk_read_only, (std::vector<bool>{true, false}));
  EXPECT_EQ(manifest->vm.disk_capacity, (std::vector<uint64_t>{kSlotBytes, kSlotBytes}));
  EXPECT_EQ(manifest->files["memory"].bytes, kMemoryMib << 20);
  EXPECT_EQ(manifest->files["memory"].sha256.size(), 64u);
  // The key is computed from the spec alone: a clone's spec finds the same template.
  auto key = engine_->template_key(clone_spec("keyed"));
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(*key, template_->key());
}

TEST_F(EngineFork, ClonesResumeTheTemplateAndKeepTheirWritesApart) {
  auto started = Clock::now();
  auto first = engine_->fork(*template_, clone_spec("first"));
  ASSERT_TRUE(first) << first.error().message();
  long fork_ms = ms_since(started);
  auto first_agent = connect(**first);
  ASSERT_TRUE(first_agent);
  long agent_ms = ms_since(started);
  auto second = engine_->fork(*template_, clone_spec("second"));
  ASSERT_TRUE(second) << second.error().message();
  auto second_agent = connect(**second);
  ASSERT_TRUE(second_agent);

  for (auto* agent : {first_agent.get(), second_agent.get()}) {
    auto token = run(*agent, "cat /tmp/t/token");
    ASSERT_TRUE(token) << token.error().message();
    EXPECT_EQ(*token, "template-token-4711\n");
  }
  ASSERT_TRUE(run(*first_agent, "echo first > /tmp/t/mine"));
  ASSERT_TRUE(run(*second_agent, "echo second > /tmp/t/mine"));
  EXPECT_EQ(run(*first_agent, "cat /tmp/t/mine").value_or("?"), "first\n");
  EXPECT_EQ(run(*second_agent, "cat /tmp/t/mine").value_or("?"), "second\n");

  // Each clone reads its own disk in the template's slot.
  ASSERT_TRUE(first_agent->mount(
      {.source = "serial:kiln-disk0", .target = "/mnt", .fstype = "ext4", .read_only = true}));
  EXPECT_EQ(run(*first_agent, "cat /mnt/hello").value_or("?"), "from-the-clone-disk\n");

  // No second boot: the clone's console starts empty and shows no kernel start-up.
  std::string console = (*first)->console_tail(1 << 20);
  EXPECT_THAT(console, ::testing::Not(HasSubstr("Linux version")));
  EXPECT_THAT(console, ::testing::Not(HasSubstr("Run /init")));

  // Its RAM is the template's file, mapped private: what it wrote is all it owns.
  auto [rss_kib, dirty_kib] = mapping_kib((*first)->monitor_pid(), template_->memory_path());
  ASSERT_GE(rss_kib, 0) << "the clone does not map " << template_->memory_path();
  EXPECT_LT(dirty_kib, static_cast<long>(kMemoryMib * 1024 / 4)) << "private dirty " << dirty_kib << " kB";

  std::string timings;
  for (const auto& step : (*first)->start_timings())
    timings += fmt::format(" {}={:.1f}ms", step.step, static_cast<double>(step.took.count()) / 1000);
  std::printf(
      "[ figures ] template build %ld ms; fork %ld ms (%s), to agent HELLO %ld ms; clone maps %ld kB of "
      "the template, %ld kB private dirty\n",
      build_ms_, fork_ms, timings.c_str(), agent_ms, rss_kib, dirty_kib);
}

// A warm pool's clone: forked with placeholders in its slots before its container exists, then given the
// container's disks while it runs. The guest mounts them by serial (CLONE_INIT, which flushes each device's
// buffers first, as kilnd does) and reads and writes them; the host sees the write. What does not fit the
// slot the guest probed is refused and leaves the slot as it was. Swaps go on after the VM is adopted.
TEST_F(EngineFork, APoolCloneTakesItsDisksWhileRunning) {
  std::string dir = scratch_->path() + "/pool";
  fs::create_directories(dir);
  VmSpec spec = template_spec(dir);
  spec.name = "pool";
  auto forked = engine_->fork(*template_, spec);
  ASSERT_TRUE(forked) << forked.error().message();
  VmInstance* vm = forked->get();
  auto* qemu = dynamic_cast<qemu::QemuVm*>(vm);
  ASSERT_TRUE(qemu);
  std::string image = dir + "/image.img", layer = dir + "/layer.img";
  fs::copy_file(disk_image(), image);
  make_ext4(layer, "from-the-layer\n");

  auto refused = [&](size_t slot, const DiskSpec& disk, ErrorCategory category, std::string_view why) {
    auto swapped = vm->swap_disk(slot, disk);
    ASSERT_FALSE(swapped) << "slot " << slot << " took " << disk.path;
    EXPECT_EQ(swapped.error().category(), category) << swapped.error().message();
    EXPECT_THAT(swapped.error().message(), HasSubstr(why));
  };
  std::string too_big = dir + "/too-big.img";
  ASSERT_TRUE(write_file_atomic(too_big, ""));
  fs::resize_file(too_big, kSlotBytes + 4096);
  refused(1, {.path = too_big}, ErrorCategory::kFailedPrecondition, "larger than disk slot 1");
  refused(0, {.path = image}, ErrorCategory::kFailedPrecondition, "disk slot 0 is read-only");
  refused(1, {.path = layer, .read_only = true}, ErrorCategory::kFailedPrecondition,
          "disk slot 1 is writable");
  refused(2, {.path = layer}, ErrorCategory::kInvalidArgument, "no disk slot 2");
  refused(1, {.path = dir + "/missing.img"}, ErrorCategory::kNotFound, "missing.img");
  // Nothing changed: both slots still hold their placeholders, and nothing else was added.
  auto nodes_of = [&]() {
    std::vector<std::string> names;
    auto nodes = qemu->qmp().execute("query-named-block-nodes", Json{{"flat", true}});
    EXPECT_TRUE(nodes) << nodes.error().message();
    if (nodes) {
      for (const auto& node : *nodes)
        names.push_back(fmt::format("{}:{}", node.value("node-name", ""), node.value("drv", "")));
    }
    std::sort(names.begin(), names.end());
    return names;
  };
  EXPECT_THAT(nodes_of(),
              ::testing::ElementsAre("disk0-file:null-co", "disk0:raw", "disk1-file:null-co", "disk1:raw"));

  // A scratch disk for a warm-up, then the placeholder back, then the container's own.
  std::string scratch = dir + "/scratch.img";
  make_ext4(scratch, "scratch\n");
  auto swapped = vm->swap_disk(1, {.path = scratch});
  ASSERT_TRUE(swapped) << swapped.error().message();
  // kilnd restarted: it adopts the VM, and swaps on from the block nodes QEMU has.
  pid_t pid = vm->monitor_pid();
  vm->release();
  forked->reset();  // as kilnd's exit would, closes its monitor connection (QEMU serves one at a time)
  auto adopted = engine_->adopt(spec, pid);
  ASSERT_TRUE(adopted) << adopted.error().message();
  vm = adopted->get();
  qemu = dynamic_cast<qemu::QemuVm*>(vm);
  ASSERT_TRUE(qemu);
  swapped = vm->swap_disk(1, {});
  ASSERT_TRUE(swapped) << swapped.error().message();
  EXPECT_THAT(nodes_of(),
              ::testing::ElementsAre("disk0-file:null-co", "disk0:raw", "disk1-file-2:null-co", "disk1:raw"));
  swapped = vm->swap_disk(0, {.path = image, .read_only = true});
  ASSERT_TRUE(swapped) << swapped.error().message();
  swapped = vm->swap_disk(1, {.path = layer});
  ASSERT_TRUE(swapped) << swapped.error().message();
  EXPECT_THAT(nodes_of(),
              ::testing::ElementsAre("disk0-file-1:file", "disk0:raw", "disk1-file-3:file", "disk1:raw"));

  auto agent = connect(*vm);
  ASSERT_TRUE(agent);
  auto init = agent->clone_init(
      {.hostname = "pool0",
       .mounts = {
           {.source = "serial:kiln-disk0", .target = "/mnt/image", .fstype = "ext4", .read_only = true},
           {.source = "serial:kiln-disk1", .target = "/mnt/layer", .fstype = "ext4"}}});
  ASSERT_TRUE(init) << init.error().message();
  EXPECT_EQ(run(*agent, "cat /mnt/image/hello").value_or("?"), "from-the-clone-disk\n");
  EXPECT_EQ(run(*agent, "cat /mnt/layer/hello").value_or("?"), "from-the-layer\n");
  ASSERT_TRUE(run(*agent, "echo written-by-the-guest > /mnt/layer/mine && sync"));
  auto unmounted = agent->unmount("/mnt/layer");
  ASSERT_TRUE(unmounted) << unmounted.error().message();
  ASSERT_TRUE(agent->unmount("/mnt/image"));
  auto landed = run_command_checked({"debugfs", "-R", "cat /mine", layer});
  ASSERT_TRUE(landed) << landed.error().message();
  EXPECT_EQ(*landed, "written-by-the-guest\n");

  // This VM's share was launched without late_entries: no entries can be added to it.
  auto added = vm->add_share_entries(0, {{.name = "x", .source = dir}});
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(added.error().message(), HasSubstr("late_entries"));
  (void)vm->kill();
}

// A warm pool's clone gets its container's host paths bound into its running share: a directory and a
// read-only file, which the guest reads through 9p; the file cannot be written through it. (Adopted first,
// as after a restart of kilnd.)
TEST_F(EngineFork, APoolCloneTakesShareEntriesWhileRunning) {
  std::string dir = scratch_->path() + "/pool-share";
  fs::create_directories(dir);
  VmSpec spec = template_spec(dir);
  spec.name = "pool-share";
  spec.shares[0].late_entries = true;
  spec.shares[0].guest_ownership = true;
  auto forked = engine_->fork(*template_, spec);
  ASSERT_TRUE(forked) << forked.error().message();
  VmInstance* vm = forked->get();
  std::string data = dir + "/host-data", conf = dir + "/host.conf";
  fs::create_directories(data);
  ASSERT_TRUE(write_file_atomic(data + "/inside", "in-the-directory\n"));
  ASSERT_TRUE(write_file_atomic(conf, "setting=1\n"));

  auto refused =
      vm->add_share_entries(0, {{.name = "data", .source = data}, {.name = "../x", .source = conf}});
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("not one path component"));
  refused = vm->add_share_entries(0, {{.name = "gone", .source = dir + "/missing"}});
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr(dir + "/missing"));
  refused = vm->add_share_entries(1, {{.name = "data", .source = data}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kInvalidArgument);

  // Entries are added to an adopted VM too (after a restart of kilnd).
  pid_t pid = vm->monitor_pid();
  vm->release();
  forked->reset();
  auto adopted = engine_->adopt(spec, pid);
  ASSERT_TRUE(adopted) << adopted.error().message();
  vm = adopted->get();
  auto added = vm->add_share_entries(
      0, {{.name = "data", .source = data}, {.name = "conf", .source = conf, .read_only = true}});
  ASSERT_TRUE(added) << added.error().message();
  // The host's own mount table did not change: its mount points are empty.
  EXPECT_TRUE(fs::is_empty(spec.shares[0].host_path + "/data"));
  EXPECT_EQ(fs::file_size(spec.shares[0].host_path + "/conf"), 0u);
  auto again = vm->add_share_entries(0, {{.name = "data", .source = data}});
  ASSERT_FALSE(again);
  EXPECT_THAT(again.error().message(), HasSubstr("used twice"));

  auto agent = connect(*vm);
  ASSERT_TRUE(agent);
  auto mounted = agent->mount({.source = "kilnshare0",
                               .target = "/mnt/share",
                               .fstype = "9p",
                               .options = std::string(agent::kShareMountOptions)});
  ASSERT_TRUE(mounted) << mounted.error().message();
  EXPECT_EQ(run(*agent, "cat /mnt/share/data/inside").value_or("?"), "in-the-directory\n");
  EXPECT_EQ(run(*agent, "cat /mnt/share/conf").value_or("?"), "setting=1\n");
  ASSERT_TRUE(run(*agent, "echo from-the-guest > /mnt/share/data/new"));
  EXPECT_EQ(read_file(data + "/new").value_or("?"), "from-the-guest\n");
  auto write = run(*agent, "echo changed > /mnt/share/conf");
  EXPECT_FALSE(write) << "the read-only entry was written";
  EXPECT_EQ(read_file(conf).value_or("?"), "setting=1\n");
  (void)vm->kill();
}

// The kernel has no VM generation id: two clones resume with the same RNG state. CLONE_INIT's host seed and
// CRNG reseed are what make their randomness differ, and without them the test sees the shared state. The
// kernel reseeds on its own from the (per-clone) input pool once its key is older than max(1 s, uptime / 2),
// so this suite's template is saved at an uptime of 20 s right after a reseed: clones without their own
// reseed then share their draws for 10 s of guest time.
class EngineForkRandomness : public EngineFork {
 protected:
  static void SetUpTestSuite() { build_template(true); }
};

TEST_F(EngineForkRandomness, ClonesDrawDifferentRandomnessOnlyAfterCloneInit) {
  int clones = 0;
  auto first_draws = [&](bool reseed) -> std::vector<std::string> {
    std::vector<std::string> draws;
    for (int i = 0; i < 2; ++i) {
      auto clone = engine_->fork(*template_, clone_spec(fmt::format("rng-{}", clones++)));
      EXPECT_TRUE(clone) << clone.error().message();
      if (!clone) return {};
      auto agent = connect(**clone);
      if (!agent) return {};
      auto init = agent->clone_init({.hostname = fmt::format("clone{}", i), .reseed = reseed});
      EXPECT_TRUE(init) << init.error().message();
      auto drawn = run(*agent,
                       "head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; "
                       "cat /proc/sys/kernel/random/uuid; hostname");
      EXPECT_TRUE(drawn) << drawn.error().message();
      draws.push_back(drawn.value_or(""));
      (void)(*clone)->kill();
    }
    return draws;
  };
  auto lines = [](const std::string& text) {
    std::vector<std::string> out;
    for (size_t at = 0; at < text.size();) {
      size_t end = text.find('\n', at);
      out.push_back(text.substr(at, end - at));
      at = end == std::string::npos ? text.size() : end + 1;
    }
    return out;
  };
  // The detector can see a shared RNG: without the reseed, two clones draw the same bytes and uuid. Not
  // always: kernel work whose timing differs between clones (a slab refilling its random freelist order,
  // say) consumes the CRNG in one clone and not the other. So a few pairs are tried; one match proves it.
  bool seen_shared = false;
  std::string last_pair;
  for (int attempt = 0; attempt < 4 && !seen_shared; ++attempt) {
    auto shared = first_draws(false);
    ASSERT_EQ(shared.size(), 2u);
    auto x = lines(shared[0]), y = lines(shared[1]);
    ASSERT_EQ(x.size(), 3u) << shared[0];
    ASSERT_EQ(y.size(), 3u) << shared[1];
    // Either draw matching proves it (a chance match of 16 bytes or a uuid is out of the question): the
    // kernel's CRNG is per CPU, so two clones whose `head` ran on different vCPUs draw differently there and
    // can still match on the uuid drawn next (seen under load in CI).
    seen_shared = x[0] == y[0] || x[1] == y[1];
    last_pair = shared[0] + " / " + shared[1];
  }
  EXPECT_TRUE(seen_shared) << "without the reseed, no pair of clones shared the template's RNG state: "
                           << last_pair;
  // With it, every pair differs.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto own = first_draws(true);
    ASSERT_EQ(own.size(), 2u);
    auto a = lines(own[0]), b = lines(own[1]);
    ASSERT_EQ(a.size(), 3u) << own[0];
    ASSERT_EQ(b.size(), 3u) << own[1];
    EXPECT_NE(a[0], b[0]) << "the first /dev/urandom bytes of two clones match";
    EXPECT_NE(a[1], b[1]) << "two clones drew the same uuid";
    EXPECT_EQ(a[2], "clone0");
    EXPECT_EQ(b[2], "clone1");
  }
}

TEST_F(EngineFork, TwentyClonesLeaveTheTemplateFileUnchanged) {
  auto manifest = snapshot::read_manifest(template_->dir());
  ASSERT_TRUE(manifest);
  std::vector<long> fork_ms;
  for (int i = 0; i < 20; ++i) {
    auto started = Clock::now();
    auto clone = engine_->fork(*template_, clone_spec(fmt::format("c{}", i)));
    ASSERT_TRUE(clone) << clone.error().message();
    auto agent = connect(**clone);
    ASSERT_TRUE(agent);
    fork_ms.push_back(ms_since(started));
    // Write over much of the guest's free memory: none of it may reach the file.
    ASSERT_TRUE(run(*agent, "head -c 33554432 /dev/urandom > /tmp/t/noise && cat /tmp/t/token"));
    (void)(*clone)->kill();
  }
  auto hash = sha256_file_hex(template_->memory_path());
  ASSERT_TRUE(hash);
  EXPECT_EQ(*hash, manifest->files["memory"].sha256);
  std::sort(fork_ms.begin(), fork_ms.end());
  std::printf("[ figures ] 20 clones: fork to agent HELLO median %ld ms (min %ld, max %ld)\n", fork_ms[10],
              fork_ms.front(), fork_ms.back());
}

TEST_F(EngineFork, BadTemplatesAreRefusedBeforeQemuStarts) {
  // A copy of the template to damage.
  std::string copy = scratch_->path() + "/copy";
  fs::copy(template_->dir(), copy);
  auto opened = engine_->open_template(copy);
  ASSERT_TRUE(opened) << opened.error().message();
  VmSpec spec = clone_spec("refused");
  auto refused = [&](const Result<std::unique_ptr<VmInstance>>& result, std::string_view why) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().category(), ErrorCategory::kFailedPrecondition) << result.error().message();
    EXPECT_THAT(result.error().message(), HasSubstr(why));
    EXPECT_FALSE(some_process_mentions(spec.runtime_dir));
  };

  VmSpec bigger = spec;
  bigger.memory_mib = 512;
  refused(engine_->fork(*opened, bigger), "memory 256 MiB vs 512 MiB");
  VmSpec writable_image = spec;
  writable_image.disks[0].read_only = false;
  refused(engine_->fork(*opened, writable_image), "disk slots [ro, rw] vs [rw, rw]");
  VmSpec too_big = spec;
  fs::resize_file(too_big.disks[1].path, kSlotBytes + 4096);
  refused(engine_->fork(*opened, too_big), "larger than the slot's 1073741824");
  fs::resize_file(too_big.disks[1].path, 64 << 20);

  fs::resize_file(copy + "/memory", 1 << 20);
  refused(engine_->fork(*opened, spec), "is 1048576 bytes");
  auto reopened = engine_->open_template(copy);
  ASSERT_FALSE(reopened);
  EXPECT_THAT(reopened.error().message(), HasSubstr("damaged"));

  fs::remove(copy + "/memory");
  refused(engine_->fork(*opened, spec), "is missing");

  // Another QEMU's template.
  fs::copy_file(template_->memory_path(), copy + "/memory");
  auto text = read_file(copy + "/snapshot.json");
  ASSERT_TRUE(text);
  auto json = parse_json(*text);
  ASSERT_TRUE(json);
  (*json)["engine_version"] = "1.0.0";
  ASSERT_TRUE(write_file_atomic(copy + "/snapshot.json", json->dump()));
  auto other = engine_->open_template(copy);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().category(), ErrorCategory::kFailedPrecondition);
  EXPECT_THAT(other.error().message(), HasSubstr("built by QEMU 1.0.0"));

  // Another manifest format.
  (*json)["version"] = 1;
  ASSERT_TRUE(write_file_atomic(copy + "/snapshot.json", json->dump()));
  auto old = engine_->open_template(copy);
  ASSERT_FALSE(old);
  EXPECT_THAT(old.error().message(), HasSubstr("version 1 is not supported"));
}

}  // namespace
}  // namespace kiln::engine

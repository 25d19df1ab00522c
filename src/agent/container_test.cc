// A container's process through the real agent (sanitized, on the host, over a socketpair): its own PID,
// mount, UTS and IPC namespaces, pivoted into a busybox root, with Docker's /dev and capability set. Needs
// root (namespaces, mounts, pivot_root): without it every case is skipped, saying so.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/agent_test_support.h"
#include "agent/container_setup.h"
#include "common/temp_dir.h"

namespace kiln::agent {
namespace {

using testing::run;

// Docker's default capabilities (moby oci/caps/defaults.go): CapBnd 00000000a80425fb.
const std::vector<std::string> kDockerDefaultCapabilities = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE"};

class ContainerProcessTest : public testing::ConnectedAgentTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: mount and PID namespaces, pivot_root";
    testing::ConnectedAgentTest::SetUp();
    root_ = std::make_unique<TempDir>(TempDir::create("kiln-container-root-").value());
    namespace fs = std::filesystem;
    fs::create_directories(root_->path() + "/bin");
    fs::create_directories(root_->path() + "/etc");
    fs::copy_file("/bin/busybox", root_->path() + "/bin/busybox");
    for (const char* applet : {"sh", "cat", "echo", "grep", "hostname", "ls", "sleep", "touch", "test"})
      fs::create_symlink("busybox", root_->path() + "/bin/" + applet);
    std::ofstream(root_->path() + "/etc/marker") << "inside the container\n";
  }

  ContainerSpec container() const {
    return {.root = root_->path(), .hostname = "c1", .capabilities = kDockerDefaultCapabilities};
  }

  testing::RunOutput run_in_container(std::vector<std::string> argv, ContainerSpec spec) {
    auto output = run(*connection_, {.argv = std::move(argv),
                                     .env = std::vector<std::string>{"PATH=/bin"},
                                     .container = std::move(spec)});
    EXPECT_TRUE(output.has_value()) << output.error().message();
    return output ? std::move(output).value() : testing::RunOutput{};
  }

  std::unique_ptr<TempDir> root_;
};

TEST_F(ContainerProcessTest, RunsAsPidOneInItsOwnRootWithItsOwnHostname) {
  auto output = run_in_container(
      {"sh", "-c",
       "echo $$; hostname; echo /proc/[0-9]*; cat /etc/marker; test -e /tmp/kiln-container-root-* "
       "&& echo host-visible || echo isolated; ls /dev"},
      container());
  EXPECT_EQ(output.status, ExitStatus::exited(0)) << output.err;
  EXPECT_EQ(
      output.out,
      "1\nc1\n/proc/1\ninside the container\nisolated\n"
      "core\nfd\nfull\nmqueue\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n");
  char host_name[65] = {};
  ::gethostname(host_name, 64);
  EXPECT_NE(std::string(host_name), "c1") << "the VM's (here: the host's) hostname must not change";
}

TEST_F(ContainerProcessTest, CapabilitiesAreDockersDefaultSet) {
  auto output = run_in_container({"grep", "-E", "^Cap(Bnd|Eff|Prm)", "/proc/self/status"}, container());
  EXPECT_EQ(output.out, "CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n");
  ContainerSpec privileged = container();
  privileged.privileged = true;
  auto all = run_in_container({"grep", "^CapBnd", "/proc/self/status"}, privileged);
  EXPECT_NE(all.out, "CapBnd:\t00000000a80425fb\n");
  EXPECT_TRUE(all.out.starts_with("CapBnd:\t000001ff") || all.out.starts_with("CapBnd:\t0000003f"))
      << all.out;
}

TEST_F(ContainerProcessTest, ReadOnlyRootRefusesWritesButDevAndShmStayWritable) {
  ContainerSpec spec = container();
  spec.read_only_root = true;
  auto output =
      run_in_container({"sh", "-c", "touch /new 2>&1; echo x > /dev/shm/ok && cat /dev/shm/ok"}, spec);
  EXPECT_NE(output.out.find("Read-only file system"), std::string::npos) << output.out;
  EXPECT_NE(output.out.find("x\n"), std::string::npos) << output.out;
  EXPECT_FALSE(std::filesystem::exists(root_->path() + "/new"));
}

TEST_F(ContainerProcessTest, ExecFailuresAndBadSpecsAreClearErrors) {
  auto missing =
      run(*connection_,
          {.argv = {"nope"}, .env = std::vector<std::string>{"PATH=/bin"}, .container = container()});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound) << missing.error().message();
  ContainerSpec no_root = container();
  no_root.root = root_->path() + "/absent";
  auto bad_root = run(*connection_, {.argv = {"true"}, .container = no_root});
  ASSERT_FALSE(bad_root);
  EXPECT_NE(bad_root.error().message().find("is not a directory"), std::string::npos)
      << bad_root.error().message();
  ContainerSpec bad_cap = container();
  bad_cap.capabilities.push_back("CAP_FLY");
  auto unknown = run(*connection_, {.argv = {"true"}, .container = bad_cap});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("unknown capability: CAP_FLY"), std::string::npos);
  EXPECT_TRUE(connection_->ping(std::chrono::seconds(10)).has_value()) << "the session goes on";
}

TEST(CapabilityNames, AcceptDockersSpellings) {
  EXPECT_EQ(capability_number("CAP_CHOWN"), 0);
  EXPECT_EQ(capability_number("net_admin"), 12);
  EXPECT_EQ(capability_number("SYS_ADMIN"), 21);
  EXPECT_EQ(capability_number("CAP_CHECKPOINT_RESTORE"), 40);
  EXPECT_EQ(capability_number("CAP_FLY"), std::nullopt);
}

}  // namespace
}  // namespace kiln::agent

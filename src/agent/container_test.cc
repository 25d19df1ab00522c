// A container's process through the real agent (sanitized, on the host, over a socketpair): its own PID,
// mount, UTS and IPC namespaces, pivoted into a busybox root, with Docker's /dev and capability set. Needs
// root (namespaces, mounts, pivot_root): without it every case is skipped, saying so.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

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
    // mkdtemp makes it 0700; an image's root is 0755, and other users must be able to walk it.
    fs::permissions(root_->path(), fs::perms(0755));
    fs::create_directories(root_->path() + "/bin");
    fs::create_directories(root_->path() + "/etc");
    fs::copy_file("/bin/busybox", root_->path() + "/bin/busybox");
    for (const char* applet : {"sh", "cat", "echo", "grep", "hostname", "ls", "sleep", "touch", "test"})
      fs::create_symlink("busybox", root_->path() + "/bin/" + applet);
    std::ofstream(root_->path() + "/etc/marker") << "inside the container\n";
    std::ofstream(root_->path() + "/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n"
                                                 << "app:x:1000:1000:App:/home/app:/bin/sh\n"
                                                 << "broken line\n";
    std::ofstream(root_->path() + "/etc/group") << "root:x:0:\nstaff:x:50:app,other\naudio:x:29:app\n"
                                                << "wheel:x:10:root\n";
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

TEST_F(ContainerProcessTest, AJoiningProcessEntersTheRunningContainer) {
  // The main process: PID 1 of its namespace, waiting. The exec joins it, as docker exec does.
  auto main_process = connection_->start_process({.argv = {"sh", "-c", "touch /tmp-main; sleep 30"},
                                                  .env = std::vector<std::string>{"PATH=/bin"},
                                                  .container = container()});
  ASSERT_TRUE(main_process) << main_process.error().message();
  ContainerSpec join = container();
  join.hostname = "ignored";
  join.join = *main_process;
  testing::RunOutput output;
  for (int attempt = 0; attempt < 50; ++attempt) {  // until the main process made its file
    output = run_in_container(
        {"sh", "-c", "test -e /tmp-main || exit 9; echo $$; echo /proc/[0-9]*; hostname"}, join);
    if (output.status != ExitStatus::exited(9)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(output.status, ExitStatus::exited(0)) << output.err;
  // Not PID 1: the container's PID 1 is the main process, whose /proc entry the exec sees.
  EXPECT_NE(output.out.substr(0, 2), "1\n") << output.out;
  EXPECT_NE(output.out.find("/proc/1 "), std::string::npos) << output.out;
  EXPECT_NE(output.out.find("\nc1\n"), std::string::npos) << output.out;
  ASSERT_TRUE(connection_->send_signal(*main_process, SIGKILL));
  connection_->release(*main_process);
  // Joining a process that is gone is refused, not a crash.
  join.join = 9999;
  auto refused = run(*connection_, {.argv = {"true"}, .container = join});
  EXPECT_FALSE(refused);
}

TEST_F(ContainerProcessTest, InitRunsTheCommandAsItsChildAndExitsAsItDid) {
  ContainerSpec spec = container();
  spec.init = true;
  auto output = run_in_container({"sh", "-c", "echo $$; exit 3"}, spec);
  EXPECT_EQ(output.status, ExitStatus::exited(3)) << output.err;
  EXPECT_NE(output.out, "1\n") << "the command is the init's child, not PID 1";
  // A signal to the container (PID 1, the init) reaches the command, whose death is the container's.
  auto killed = run_in_container({"sh", "-c", "kill -TERM 1; sleep 5"}, spec);
  EXPECT_EQ(killed.status, ExitStatus::exited(128 + SIGTERM)) << killed.err;
  // A command that cannot start is still reported as such.
  auto missing = run(*connection_,
                     {.argv = {"nosuch"}, .env = std::vector<std::string>{"PATH=/bin"}, .container = spec});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().category(), ErrorCategory::kNotFound);
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

TEST_F(ContainerProcessTest, UserNamesResolveInTheContainersOwnFiles) {
  ContainerSpec spec = container();
  spec.user = "app";
  auto output = run(*connection_,
                    {.argv = {"sh", "-c", "grep -E '^(Uid|Gid|Groups)' /proc/self/status; echo $HOME; pwd"},
                     .env = std::vector<std::string>{"PATH=/bin"},
                     .cwd = "/srv/new/dir",
                     .container = spec});
  ASSERT_TRUE(output) << output.error().message();
  EXPECT_EQ(output->out,
            "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t29 50 1000 "
            "\n/home/app\n/srv/new/dir\n")  // the primary group too, as runc sets them under dockerd
      << output->err;
  EXPECT_TRUE(std::filesystem::is_directory(root_->path() + "/srv/new/dir")) << "WorkingDir is created";
  spec.user = "app:wheel";
  EXPECT_NE(run_in_container({"grep", "^Gid", "/proc/self/status"}, spec).out.find("Gid:\t10\t"),
            std::string::npos);
  spec.user = "4242:4343";  // numbers need no entry; the group alone; HOME is "/"
  EXPECT_EQ(
      run_in_container({"sh", "-c", "grep -E '^(Uid|Gid|Groups)' /proc/self/status; echo $HOME"}, spec).out,
      "Uid:\t4242\t4242\t4242\t4242\nGid:\t4343\t4343\t4343\t4343\nGroups:\t4343 \n/\n");
  spec.user = "nobody2";
  auto missing = run(*connection_, {.argv = {"true"}, .container = spec});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(), "unable to find user nobody2: no matching entries in passwd file");
  spec.user = "app:nogroup";
  auto no_group = run(*connection_, {.argv = {"true"}, .container = spec});
  ASSERT_FALSE(no_group);
  EXPECT_EQ(no_group.error().message(), "unable to find group nogroup: no matching entries in group file");
}

TEST(ContainerFilesTest, WrittenInsideTheRootEvenThroughHostileSymlinks) {
  auto root = TempDir::create("kiln-container-files-").value();
  auto outside = TempDir::create("kiln-container-outside-").value();
  // An image whose /etc/hosts points at an absolute path: it must land in the container's own tree.
  std::filesystem::create_directories(root.path() + "/etc");
  std::filesystem::create_symlink(outside.path() + "/hosts", root.path() + "/etc/hosts");
  ASSERT_TRUE(write_container_files(root.path(),
                                    {{"etc/hostname", "web\n"}, {"etc/hosts", "127.0.0.1 localhost\n"}}));
  EXPECT_FALSE(std::filesystem::exists(outside.path() + "/hosts"));
  std::ifstream hostname(root.path() + "/etc/hostname");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(hostname), {}), "web\n");
  // No /etc at all (a scratch image): it is made.
  auto bare = TempDir::create("kiln-container-bare-").value();
  ASSERT_TRUE(write_container_files(bare.path(), {{"etc/resolv.conf", "nameserver 10.0.0.1\n"}}));
  EXPECT_TRUE(std::filesystem::exists(bare.path() + "/etc/resolv.conf"));
}

TEST(ContainerUserTest, PasswdSymlinksResolveInsideTheRoot) {
  auto root = TempDir::create("kiln-container-user-").value();
  std::filesystem::create_directories(root.path() + "/etc");
  std::filesystem::create_directories(root.path() + "/real");
  std::ofstream(root.path() + "/real/passwd") << "svc:x:77:88::/var/svc:/bin/false\n";
  // An absolute symlink in the image means the container's /real/passwd, never the VM's.
  std::filesystem::create_symlink("/real/passwd", root.path() + "/etc/passwd");
  auto user = resolve_container_user(root.path(), "svc");
  ASSERT_TRUE(user) << user.error().message();
  EXPECT_EQ(user->uid, 77u);
  EXPECT_EQ(user->gid, 88u);
  EXPECT_EQ(user->home, "/var/svc");
  EXPECT_EQ(user->groups, std::vector<uint32_t>{88u});  // no /etc/group at all: the primary group only
  auto root_user = resolve_container_user(root.path(), "");
  ASSERT_TRUE(root_user);
  EXPECT_EQ(root_user->uid, 0u);
  EXPECT_FALSE(resolve_container_user(root.path(), "4294967295"));
}

}  // namespace
}  // namespace kiln::agent

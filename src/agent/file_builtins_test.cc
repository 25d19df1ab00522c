// The agent's file builtins (file_builtins.h) through the real agent (sanitized, on the host, over a
// socketpair), as kilnd runs them: a RUN with a builtin, chrooted into a directory standing in for a
// container's root. Needs root (chroot, chown, mknod, trusted.* xattrs): without it every case is skipped.
#include "agent/file_builtins.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "agent/agent_test_support.h"
#include "common/tar.h"
#include "common/temp_dir.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::RunInput;

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The entries of an archive: name -> (header, content).
std::map<std::string, std::pair<tar::Header, std::string>> entries_of(const std::string& archive) {
  size_t offset = 0;
  tar::Reader reader([&](char* buffer, size_t size) -> Result<size_t> {
    size_t n = std::min(size, archive.size() - offset);
    std::copy_n(archive.data() + offset, n, buffer);
    offset += n;
    return n;
  });
  std::map<std::string, std::pair<tar::Header, std::string>> out;
  for (;;) {
    auto next = reader.next();
    EXPECT_TRUE(next.has_value()) << next.error().message();
    if (!next || !*next) return out;
    std::string content;
    char buffer[4096];
    for (;;) {
      auto n = reader.read(buffer, sizeof buffer);
      if (!n || *n == 0) break;
      content.append(buffer, *n);
    }
    out[(*next)->name] = {**next, content};
  }
}

std::string entry(const tar::Header& header, std::string_view content = {}) {
  return tar::encode_header(header) + std::string(content) + tar::padding_for(content.size());
}

class FileBuiltinsTest : public testing::ConnectedAgentTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: chroot, chown, mknod";
    testing::ConnectedAgentTest::SetUp();
    root_ = std::make_unique<TempDir>(TempDir::create("kiln-files-root-").value());
    const std::string& root = root_->path();
    fs::permissions(root, fs::perms(0755));
    fs::create_directories(root + "/etc");
    fs::create_directories(root + "/data/sub");
    fs::create_directories(root + "/bin");
    std::ofstream(root + "/etc/passwd")
        << "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    std::ofstream(root + "/etc/group") << "root:x:0:\napp:x:1000:\n";
    std::ofstream(root + "/data/sub/file.txt") << "content\n";
    fs::create_symlink("sub/file.txt", root + "/data/link");
    fs::create_symlink("busybox", root + "/bin/sh");
    ASSERT_EQ(::link((root + "/data/sub/file.txt").c_str(), (root + "/data/hard.txt").c_str()), 0);
  }

  testing::RunOutput builtin(std::string name, std::vector<std::string> args,
                             std::optional<std::string> input = {}, std::string root = "") {
    ProcessSpec spec{.builtin = BuiltinSpec{.name = std::move(name),
                                            .args = std::move(args),
                                            .root = root.empty() ? root_->path() : root}};
    auto output = run(*connection_, spec, RunInput{.stdin_data = std::move(input)});
    EXPECT_TRUE(output.has_value()) << output.error().message();
    return output ? std::move(output).value() : testing::RunOutput{};
  }

  std::unique_ptr<TempDir> root_;
};

TEST_F(FileBuiltinsTest, StatIsDockerdsPathStat) {
  auto out = builtin("archive-stat", {"/bin/sh"});
  ASSERT_EQ(out.status, ExitStatus::exited(0)) << out.err;
  auto stat = nlohmann::json::parse(out.out);
  EXPECT_EQ(stat["name"], "sh");
  EXPECT_EQ(stat["size"], 7);
  EXPECT_EQ(stat["mode"], (1U << 27) | 0777);
  EXPECT_EQ(stat["linkTarget"], "/bin/busybox") << "resolved inside the root, even when dangling";
  EXPECT_TRUE(stat["mtime"].get<std::string>().ends_with("Z"));
  auto dir = nlohmann::json::parse(builtin("archive-stat", {"data/"}).out);
  EXPECT_EQ(dir["name"], "data");
  EXPECT_EQ(dir["mode"], (1U << 31) | 0755);
  auto missing = builtin("archive-stat", {"/nope"});
  EXPECT_EQ(missing.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kNotFound)));
  EXPECT_NE(missing.err.find("No such file or directory"), std::string::npos) << missing.err;
}

TEST_F(FileBuiltinsTest, GetArchivesATreeNamedAfterThePath) {
  auto out = builtin("archive-get", {"/data"});
  ASSERT_EQ(out.status, ExitStatus::exited(0)) << out.err;
  auto entries = entries_of(out.out);
  std::vector<std::string> names;
  for (const auto& [name, _] : entries) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"data/", "data/hard.txt", "data/link", "data/sub/",
                                             "data/sub/file.txt"}));
  EXPECT_EQ(entries["data/link"].first.type, tar::EntryType::kSymlink);
  EXPECT_EQ(entries["data/link"].first.link_name, "sub/file.txt");
  // The walk is in name order: hard.txt comes first and holds the content; file.txt links to it.
  EXPECT_EQ(entries["data/hard.txt"].second, "content\n");
  EXPECT_EQ(entries["data/sub/file.txt"].first.type, tar::EntryType::kHardLink);
  EXPECT_EQ(entries["data/sub/file.txt"].first.link_name, "data/hard.txt");
  // "dir/." archives the contents; "/" names entries from the root, as dockerd's rebase does.
  auto contents = entries_of(builtin("archive-get", {"/data/sub/."}).out);
  EXPECT_TRUE(contents.count("./") && contents.count("./file.txt")) << contents.size();
  auto whole = entries_of(builtin("archive-get", {"/"}).out);
  EXPECT_TRUE(whole.count("/") && whole.count("/etc/passwd")) << whole.size();
  // A symlink is archived as itself.
  auto link = entries_of(builtin("archive-get", {"/bin/sh"}).out);
  ASSERT_EQ(link.size(), 1u);
  EXPECT_EQ(link["sh"].first.link_name, "busybox");
}

TEST_F(FileBuiltinsTest, PutExtractsIntoTheRootAndRoundTrips) {
  std::string archive = builtin("archive-get", {"/data"}).out;
  fs::create_directories(root_->path() + "/copy");
  auto put = builtin("archive-put", {"/copy"}, archive);
  ASSERT_EQ(put.status, ExitStatus::exited(0)) << put.err;
  EXPECT_EQ(file_text(root_->path() + "/copy/data/sub/file.txt"), "content\n");
  EXPECT_EQ(fs::read_symlink(root_->path() + "/copy/data/link"), "sub/file.txt");
  struct stat a {};
  struct stat b {};
  ASSERT_EQ(::stat((root_->path() + "/copy/data/hard.txt").c_str(), &a), 0);
  ASSERT_EQ(::stat((root_->path() + "/copy/data/sub/file.txt").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "the hard link is one";

  std::string owned = entry({.name = "owned.txt", .mode = 0600, .uid = 1234, .gid = 5678, .size = 1}, "o") +
                      entry({.name = "/abs.txt", .size = 1}, "a") + tar::end_of_archive();
  ASSERT_EQ(builtin("archive-put", {"/copy"}, owned).status, ExitStatus::exited(0));
  ASSERT_EQ(::stat((root_->path() + "/copy/owned.txt").c_str(), &a), 0);
  EXPECT_EQ(a.st_uid, 1234u);
  EXPECT_EQ(a.st_gid, 5678u);
  EXPECT_EQ(a.st_mode & 07777, 0600u);
  EXPECT_EQ(file_text(root_->path() + "/copy/abs.txt"), "a") << "an absolute name lands in the destination";
  ASSERT_EQ(builtin("archive-put", {"/copy", "--chown-user", "app"}, owned).status, ExitStatus::exited(0));
  ASSERT_EQ(::stat((root_->path() + "/copy/owned.txt").c_str(), &a), 0);
  EXPECT_EQ(a.st_uid, 1000u) << "copyUIDGID: the container's user";
}

TEST_F(FileBuiltinsTest, PutRefusesEscapesAndStaysInTheRoot) {
  auto escape = builtin("archive-put", {"/data"},
                        entry({.name = "../../escaped.txt", .size = 1}, "x") + tar::end_of_archive());
  EXPECT_EQ(escape.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kBadArchive)));
  EXPECT_EQ(escape.err, "\"../../escaped.txt\" is outside of \"/data\"\n");
  auto symlink = builtin("archive-put", {"/data"},
                         entry({.name = "up", .type = tar::EntryType::kSymlink, .link_name = "../../.."}) +
                             tar::end_of_archive());
  EXPECT_EQ(symlink.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kBadArchive))) << symlink.err;
  // A symlink to "/" in the archive, then an entry through it: the chroot keeps it in the root.
  std::string through = entry({.name = "root", .type = tar::EntryType::kSymlink, .link_name = "/"}) +
                        entry({.name = "root/tmp-through.txt", .size = 1}, "t") + tar::end_of_archive();
  ASSERT_EQ(builtin("archive-put", {"/data"}, through).status, ExitStatus::exited(0));
  EXPECT_TRUE(fs::exists(root_->path() + "/tmp-through.txt"));
  EXPECT_FALSE(fs::exists("/tmp-through.txt"));
  EXPECT_FALSE(fs::exists(fs::path(root_->path()).parent_path() / "escaped.txt"));

  auto not_dir = builtin("archive-put", {"/etc/passwd"}, tar::end_of_archive());
  EXPECT_EQ(not_dir.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kNotADirectory)));
  auto missing = builtin("archive-put", {"/nope"}, tar::end_of_archive());
  EXPECT_EQ(missing.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kNotFound)));
  auto garbage = builtin("archive-put", {"/data"}, std::string(1024, 'x'));
  EXPECT_EQ(garbage.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kBadArchive)));

  std::string dir_over_file = entry({.name = "sub", .size = 1}, "f") + tar::end_of_archive();
  auto refused = builtin("archive-put", {"/data", "--no-overwrite-dir-non-dir"}, dir_over_file);
  EXPECT_EQ(refused.status, ExitStatus::exited(static_cast<int>(BuiltinExit::kFailed)));
  EXPECT_NE(refused.err.find("cannot overwrite directory"), std::string::npos) << refused.err;
  EXPECT_TRUE(fs::is_directory(root_->path() + "/data/sub"));
}

TEST_F(FileBuiltinsTest, ExportArchivesTheWholeRoot) {
  auto out = builtin("export", {});
  ASSERT_EQ(out.status, ExitStatus::exited(0)) << out.err;
  auto entries = entries_of(out.out);
  EXPECT_TRUE(entries.count("etc/passwd"));
  EXPECT_TRUE(entries.count("data/sub/file.txt"));
  EXPECT_FALSE(entries.count("/")) << "the root itself is not an entry";
  EXPECT_FALSE(entries.count("./"));
}

// An overlay's upper and lower directories as the kernel leaves them: a whiteout is a 0/0 character device,
// a directory deleted and made again is opaque (trusted.overlay.opaque=y).
TEST_F(FileBuiltinsTest, DiffIsDockerdsChanges) {
  std::string lower = root_->path() + "/lower";
  std::string upper = root_->path() + "/upper";
  for (const char* dir : {"/etc", "/bin", "/home/app", "/tmp", "/var/empty"})
    fs::create_directories(lower + dir);
  std::ofstream(lower + "/etc/passwd") << "root\n";
  std::ofstream(lower + "/etc/group") << "root\n";
  std::ofstream(lower + "/bin/ls") << "ls\n";
  std::ofstream(lower + "/bin/cat") << "cat\n";
  for (const char* dir : {"/etc", "/bin", "/home", "/tmp", "/d/e", "/proc", "/var/empty"})
    fs::create_directories(upper + dir);
  fs::copy_file(lower + "/etc/passwd", upper + "/etc/passwd");
  std::ofstream(upper + "/etc/passwd", std::ios::app) << "x\n";
  std::ofstream(upper + "/etc/hostname") << "kiln\n";  // Kiln writes it; dockerd bind-mounts it: no change
  ASSERT_EQ(::mknod((upper + "/bin/ls").c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
  ASSERT_EQ(::setxattr((upper + "/home").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  std::ofstream(upper + "/home/z") << "";
  std::ofstream(upper + "/newfile") << "hi\n";
  // Copied up without changes (same mode, owner and times): no change.
  struct stat st {};
  ASSERT_EQ(::stat((lower + "/var/empty").c_str(), &st), 0);
  for (const char* dir : {"/var/empty", "/tmp"}) {
    timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, (upper + dir).c_str(), times, 0), 0);
  }
  // The same upper as an image layer (docker commit): OCI whiteouts, Kiln's own /etc files left out.
  auto layer = builtin("layer", {upper}, std::nullopt, "/");
  ASSERT_EQ(layer.status, ExitStatus::exited(0)) << layer.err;
  auto entries = entries_of(layer.out);
  EXPECT_TRUE(entries.count("bin/.wh.ls"));
  EXPECT_FALSE(entries.count("bin/ls"));
  EXPECT_TRUE(entries.count("home/.wh..wh..opq"));
  EXPECT_TRUE(entries.count("home/z"));
  EXPECT_EQ(entries["etc/passwd"].second, "root\nx\n");
  EXPECT_FALSE(entries.count("etc/hostname"));
  EXPECT_FALSE(entries.count("proc/"));

  auto out = builtin("diff", {upper, lower}, std::nullopt, "/");
  ASSERT_EQ(out.status, ExitStatus::exited(0)) << out.err;
  EXPECT_EQ(out.out,
            "C /bin\n"
            "D /bin/ls\n"
            "A /d\n"
            "A /d/e\n"
            "C /etc\n"
            "C /etc/passwd\n"
            "C /home\n"
            "A /home/z\n"
            "D /home/app\n"
            "A /newfile\n");
}

}  // namespace
}  // namespace kiln::agent

#include "daemon/containers/container_io.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/stdcopy.h"

namespace kiln::daemon::containers {
namespace {

std::pair<UniqueFd, UniqueFd> socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string read_some(int fd) {
  std::string buffer(4096, '\0');
  ssize_t n = ::read(fd, buffer.data(), buffer.size());
  buffer.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buffer;
}

TEST(DetachKeys, ParsesDockersNotation) {
  EXPECT_EQ(parse_detach_keys("ctrl-p,ctrl-q").value(), "\x10\x11");
  EXPECT_EQ(parse_detach_keys("ctrl-a,x").value(), "\x01x");
  EXPECT_EQ(parse_detach_keys("ctrl-@").value(), std::string(1, '\0'));
  EXPECT_EQ(parse_detach_keys("ctrl-[").value(), "\x1b");
  auto bad = parse_detach_keys("ctrl-1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "Invalid detach keys (ctrl-1) provided: Unknown character: 'ctrl-1'");
  EXPECT_FALSE(parse_detach_keys("shift-a"));
}

TEST(DetachKeyScanner, PassesInputAndStopsAtTheSequence) {
  DetachKeyScanner scanner("\x10\x11");
  std::string out;
  EXPECT_FALSE(scanner.feed("ab\x10", out));
  EXPECT_EQ(out, "ab");  // the ctrl-p is held back: it may start the sequence
  EXPECT_FALSE(scanner.feed("c", out));
  EXPECT_EQ(out,
            "ab\x10"
            "c");  // it did not
  EXPECT_FALSE(scanner.feed("\x10", out));
  EXPECT_TRUE(
      scanner.feed("\x11"
                   "after",
                   out));
  EXPECT_EQ(out,
            "ab\x10"
            "c");
}

TEST(DetachKeyScanner, RepeatedFirstKeyStillMatches) {
  DetachKeyScanner scanner("\x10\x11");
  std::string out;
  EXPECT_TRUE(scanner.feed("\x10\x10\x11", out));
  EXPECT_EQ(out, "\x10");
}

TEST(ContainerIo, InputBeforeTheRunIsDeliveredAtStartThenClosed) {
  ContainerIo io;
  io.write_stdin("early ");
  io.close_stdin();
  auto [relay, process] = socket_pair();
  auto shared = std::make_shared<UniqueFd>(std::move(relay));
  io.begin_run(shared, true);
  std::string got;
  for (std::string chunk = read_some(process.get()); !chunk.empty(); chunk = read_some(process.get()))
    got += chunk;
  EXPECT_EQ(got, "early ");  // and then EOF: close_stdin() was held too
}

TEST(ContainerIo, BroadcastFramesForNonTtyClientsAndEndsThem) {
  ContainerIo io;
  auto [server, client] = socket_pair();
  auto attached = std::make_shared<AttachedClient>();
  attached->fd = std::move(server);
  attached->want_stderr = false;
  io.add(attached);
  io.broadcast(stdcopy::kStderr, "hidden");
  io.broadcast(stdcopy::kStdout, "shown");
  io.end_of_run();
  EXPECT_TRUE(attached->ended);
  std::string got;
  for (std::string chunk = read_some(client.get()); !chunk.empty(); chunk = read_some(client.get()))
    got += chunk;
  EXPECT_EQ(got, stdcopy::frame(stdcopy::kStdout, "shown"));
}

}  // namespace
}  // namespace kiln::daemon::containers

#include "common/connect_retry.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "common/temp_dir.h"
#include "common/unix_socket.h"

namespace kiln {
namespace {

using std::chrono::milliseconds;

TEST(ConnectRetry, ConnectsAtOnceWhenTheServerListens) {
  TempDir dir = *TempDir::create();
  std::string path = dir.path() + "/s.sock";
  UniqueFd server = *listen_unix_socket(path);
  auto fd = connect_unix_socket_retrying(path, {.timeout = milliseconds(10000)});
  ASSERT_TRUE(fd) << fd.error().message();
}

TEST(ConnectRetry, WaitsForASocketThatAppearsLater) {
  TempDir dir = *TempDir::create();
  std::string path = dir.path() + "/late.sock";
  UniqueFd server;
  // The server starts a little after the client began trying (as QEMU creates its monitor mid-start-up).
  std::thread starter([&] {
    std::this_thread::sleep_for(milliseconds(100));  // the scenario, not synchronization
    server = *listen_unix_socket(path);
  });
  auto fd = connect_unix_socket_retrying(path, {.timeout = milliseconds(30000)});
  starter.join();
  ASSERT_TRUE(fd) << fd.error().message();
}

TEST(ConnectRetry, TimesOutWhenNothingAppears) {
  TempDir dir = *TempDir::create();
  auto fd = connect_unix_socket_retrying(dir.path() + "/never.sock", {.timeout = milliseconds(50)});
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().category(), ErrorCategory::kTimeout);
  EXPECT_NE(fd.error().message().find("never.sock"), std::string::npos);
}

TEST(ConnectRetry, GivesUpWhenTheServerIsGone) {
  TempDir dir = *TempDir::create();
  int gone[2];
  ASSERT_EQ(::pipe(gone), 0);
  UniqueFd read_end(gone[0]);
  UniqueFd write_end(gone[1]);
  write_end.reset();  // EOF: readable, as a dead process's pidfd is
  auto fd = connect_unix_socket_retrying(dir.path() + "/never.sock",
                                         {.timeout = milliseconds(60000), .give_up_fd = read_end.get()});
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().category(), ErrorCategory::kCancelled);
}

TEST(ConnectRetry, OtherErrorsAreNotRetried) {
  auto fd = connect_unix_socket_retrying(std::string(200, 'x'), {.timeout = milliseconds(60000)});
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().category(), ErrorCategory::kInvalidArgument);
}

}  // namespace
}  // namespace kiln

#include "cli/vm_exec_stream.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "common/stdcopy.h"
#include "common/unique_fd.h"

namespace kiln::cli {
namespace {

using stdcopy::frame;

// A fake daemon end: echoes stdin back as stdout frames until the client half-closes, then says "bye" on
// stderr and closes. 1 MiB each way, so both directions must flow at once.
TEST(PumpExecStream, RoundTripsInputUntilHalfClose) {
  auto [client, daemon] = make_socket_pair().value();
  Pipe stdout_pipe = make_pipe().value();
  Pipe stderr_pipe = make_pipe().value();
  Pipe stdin_pipe = make_pipe().value();
  std::string input(1 << 20, '\0');
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>(i * 7);

  std::thread fake_daemon([fd = std::move(daemon)] {
    char buffer[8192];
    ssize_t got;
    while ((got = ::recv(fd.get(), buffer, sizeof buffer, 0)) > 0) {
      ASSERT_TRUE(write_all(fd.get(), frame(1, std::string_view(buffer, static_cast<size_t>(got)))));
    }
    ASSERT_TRUE(write_all(fd.get(), frame(2, "bye")));
  });
  std::thread feeder(
      [&input, fd = std::move(stdin_pipe.write_end)] { ASSERT_TRUE(write_all(fd.get(), input)); });
  std::string out, err;
  std::thread out_reader([&] { out = read_to_end(stdout_pipe.read_end.get()).value(); });
  std::thread err_reader([&] { err = read_to_end(stderr_pipe.read_end.get()).value(); });

  auto ended = pump_exec_stream({.socket = client.get(),
                                 .already_read = frame(1, "early:"),
                                 .stdin_fd = stdin_pipe.read_end.get(),
                                 .stdout_fd = stdout_pipe.write_end.get(),
                                 .stderr_fd = stderr_pipe.write_end.get()});
  ASSERT_TRUE(ended);
  EXPECT_EQ(*ended, StreamEnd::kClosed);
  stdout_pipe.write_end.reset();
  stderr_pipe.write_end.reset();
  feeder.join();
  fake_daemon.join();
  out_reader.join();
  err_reader.join();
  EXPECT_EQ(out, "early:" + input);
  EXPECT_EQ(err, "bye");
}

}  // namespace
}  // namespace kiln::cli

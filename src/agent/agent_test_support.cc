#include "agent/agent_test_support.h"

#include <sys/mman.h>
#include <unistd.h>

namespace kiln::agent::testing {

const char* sanitized_agent_binary() {
  return KILN_AGENT_SANITIZED_BINARY;
}
const char* static_agent_binary() {
  return KILN_AGENT_STATIC_BINARY;
}

Result<LaunchedAgent> launch_agent(const std::string& binary) {
  auto [host_end, agent_end] = KILN_TRY(make_socket_pair());
  SpawnOptions options{.argv = {binary, "--serve-fd", "3", "--log-level", "warn"},
                       .pass_fds = {{agent_end.get(), 3}},
                       .kill_with_parent = true};
  ChildProcess process = KILN_TRY(ChildProcess::spawn(options));
  return LaunchedAgent{std::move(process), std::move(host_end)};
}

Result<UniqueFd> memory_file(std::string_view data) {
  UniqueFd fd(::memfd_create("kiln-agent-test", MFD_CLOEXEC));
  if (!fd) return Error::last_os_error("memfd_create");
  KILN_TRY(write_all(fd.get(), data));
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return Error::last_os_error("lseek");
  return fd;
}

Result<std::string> contents(int fd) {
  if (::lseek(fd, 0, SEEK_SET) != 0) return Error::last_os_error("lseek");
  return read_to_end(fd);
}

Result<RunOutput> run(AgentConnection& connection, const ProcessSpec& spec, const RunInput& input) {
  UniqueFd stdin_file;
  if (input.stdin_data) stdin_file = KILN_TRY(memory_file(*input.stdin_data));
  UniqueFd out = KILN_TRY(memory_file());
  UniqueFd err = KILN_TRY(memory_file());
  ProcessId id = KILN_TRY(connection.start_process(spec));
  AttachOptions options{.stdin_fd = stdin_file.get(),
                        .stdout_fd = out.get(),
                        .stderr_fd = err.get(),
                        .signal_fd = input.signal_fd};
  RunOutput output;
  output.status = KILN_TRY(attach_process(connection, id, options));
  output.out = KILN_TRY(contents(out.get()));
  output.err = KILN_TRY(contents(err.get()));
  return output;
}

void ConnectedAgentTest::SetUp() {
  auto launched = launch_agent(sanitized_agent_binary());
  ASSERT_TRUE(launched.has_value()) << launched.error().message();
  agent_ = std::make_unique<ChildProcess>(std::move(launched->process));
  auto connection = AgentConnection::connect(std::move(launched->host_end), kAgentTimeout);
  ASSERT_TRUE(connection.has_value()) << connection.error().message();
  connection_ = std::move(connection).value();
}

void ConnectedAgentTest::TearDown() {
  connection_.reset();
  if (agent_ && !agent_->reaped()) {
    auto status = agent_->wait_for(kAgentTimeout);
    ASSERT_TRUE(status.has_value() && status->has_value()) << "agent did not exit";
    EXPECT_EQ(**status, ExitStatus::exited(0));
  }
}

}  // namespace kiln::agent::testing

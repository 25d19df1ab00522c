// Test support for the agent's host-side tests: a real kiln-agent (--serve-fd) on a socketpair, and a helper
// that runs one process through AgentConnection + attach_process and captures what it printed.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

#include "agent/client/agent_connection.h"
#include "agent/client/attach.h"
#include "common/child_process.h"
#include "common/unique_fd.h"

namespace kiln::agent::testing {

// Paths baked in by CMake.
const char* sanitized_agent_binary();
const char* static_agent_binary();

// A kiln-agent child serving one end of a socketpair; the other end is `host_end` (until taken).
struct LaunchedAgent {
  ChildProcess process;
  UniqueFd host_end;
};
Result<LaunchedAgent> launch_agent(const std::string& binary);

struct RunOutput {
  ExitStatus status = ExitStatus::exited(0);
  std::string out;
  std::string err;
};

struct RunInput {
  std::optional<std::string> stdin_data;  // nullopt: stdin closed at once
  int signal_fd = -1;
};

// Starts `spec`, attaches with stdin from `input` and stdout/stderr captured in memfds.
Result<RunOutput> run(AgentConnection& connection, const ProcessSpec& spec, const RunInput& input = {});

// An in-memory file holding `data`, positioned at its start.
Result<UniqueFd> memory_file(std::string_view data = {});
// The whole contents of a memory_file.
Result<std::string> contents(int fd);

// A fixture with a sanitized kiln-agent serving a socketpair and a connected AgentConnection. TearDown
// closes the channel and expects the agent to exit cleanly (ASan would make a leaky one fail).
class ConnectedAgentTest : public ::testing::Test {
 protected:
  static constexpr auto kAgentTimeout = std::chrono::seconds(30);

  void SetUp() override;
  void TearDown() override;

  std::unique_ptr<ChildProcess> agent_;
  std::unique_ptr<AgentConnection> connection_;
};

}  // namespace kiln::agent::testing

// How `kiln vm` and `kiln image` reach kilnd: the -H/--host option (env KILN_HOST), one api::http::Client per
// command, and JSON calls whose error responses become Errors carrying the daemon's message. Used on the
// CLI's one thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/http/client.h"
#include "cli/command.h"
#include "common/encoding.h"
#include "common/json.h"

namespace kiln::cli {

inline constexpr std::string_view kDefaultKilnHost = "unix:///run/kiln/kiln.sock";

// Where kilnd listens; filled by the -H option (or KILN_HOST) before any action runs.
struct DaemonAddress {
  std::string host{kDefaultKilnHost};
};

// Adds -H/--host (env KILN_HOST) to `app`; the value lands in `address`.
void add_host_option(CLI::App& app, DaemonAddress& address);

// The Kiln VM API as the CLI calls it.
class VmApi {
 public:
  static Result<VmApi> create(const DaemonAddress& address);
  explicit VmApi(api::http::Client client) : client_(std::move(client)) {}

  // Sends a request; a 2xx answer's body as JSON (null when empty), any other status as an Error whose
  // message is the daemon's.
  Result<Json> call(std::string method, const std::string& target,
                    const std::optional<Json>& body = std::nullopt) const;

  const api::http::Client& client() const { return client_; }

 private:
  api::http::Client client_;
};

// "/v1/vms/<vm>" plus "/<suffix>" when `suffix` is not empty.
std::string vm_target(std::string_view vm, std::string_view suffix = {});

// An action that runs `body` with a VmApi; a failure prints "kiln: <message>" and exits 1.
using ApiBody = std::function<Result<int>(const VmApi&)>;
Action with_api(std::shared_ptr<DaemonAddress> address, ApiBody body);

// The `kiln vm` subcommands served by kilnd; `vm` is the "vm" subcommand.
void register_vm_create_command(CLI::App& vm, std::shared_ptr<DaemonAddress> address, Action& chosen);
void register_vm_manage_commands(CLI::App& vm, std::shared_ptr<DaemonAddress> address, Action& chosen);
void register_vm_exec_command(CLI::App& vm, std::shared_ptr<DaemonAddress> address, Action& chosen);

}  // namespace kiln::cli

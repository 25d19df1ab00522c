#include "cli/vm_client.h"

#include <fmt/core.h>

namespace kiln::cli {

void add_host_option(CLI::App& app, DaemonAddress& address) {
  app.add_option("-H,--host", address.host, "kilnd's address: unix:///path or tcp://HOST:PORT")
      ->envname("KILN_HOST")
      ->capture_default_str();
}

Result<VmApi> VmApi::create(const DaemonAddress& address) {
  return VmApi(KILN_TRY(api::http::Client::create(address.host)));
}

Result<Json> VmApi::call(std::string method, const std::string& target,
                         const std::optional<Json>& body) const {
  api::http::Response response = KILN_TRY(client_.request(std::move(method), target, body));
  if (response.status < 200 || response.status >= 300) return api::http::error_from_response(response);
  if (response.body.empty()) return Json();
  return parse_json(response.body);
}

std::string vm_target(std::string_view vm, std::string_view suffix) {
  std::string target = "/v1/vms/" + percent_encode(vm);
  if (!suffix.empty()) target += fmt::format("/{}", suffix);
  return target;
}

Action with_api(std::shared_ptr<DaemonAddress> address, ApiBody body) {
  return [address = std::move(address), body = std::move(body)]() -> int {
    auto api = VmApi::create(*address);
    if (!api) {
      print_error(api.error().message());
      return 1;
    }
    auto code = body(*api);
    if (!code) {
      print_error(code.error().message());
      return 1;
    }
    return *code;
  };
}

}  // namespace kiln::cli

// POST /v1/vms/{id}/exec: a process in the VM, its stdio on the hijacked connection (HTTP upgrade, or
// Docker's legacy raw stream): raw with a tty, Docker stdcopy frames without. The exec id comes back in the
// X-Kiln-Exec-Id header; GET /v1/vms/{id}/exec/{exec} then reports the exit code, and resize/signal act on
// the running process.
#include <fmt/format.h>
#include <sys/socket.h>

#include "agent/client/attach.h"
#include "api/rest/rest_api.h"
#include "api/rest/vm_json.h"
#include "common/stdcopy.h"

namespace kiln::api::rest {
namespace {

using http::Reply;
using http::Request;

std::string new_exec_id() {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{:x}{:06x}", std::chrono::steady_clock::now().time_since_epoch().count() & 0xffffffffff,
                     ++counter);
}

// Tells the client why the process never ran, on the stream it is already reading.
void report_on_stream(int fd, bool tty, const std::string& message) {
  std::string text = message + "\n";
  std::string frame = tty ? text : stdcopy::frame(stdcopy::kStderr, text);
  (void)::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
}

Result<std::optional<uint16_t>> dimension(const Request& request, std::string_view key) {
  return request.query.get_unsigned<uint16_t>(key, 1, 65535);
}

Result<ExecRegistry::Entry> find_exec(ApiContext& context, const Request& request) {
  auto vm = KILN_TRY(context.vms.inspect(std::string(request.param("id"))));
  // A process still being started is answered once it started (a start takes at most the agent's timeout).
  auto entry = context.execs.get(std::string(request.param("exec")), std::chrono::seconds(40));
  if (!entry || entry->vm_id != vm.id) {
    return Error::not_found(fmt::format("no such exec: {}", request.param("exec")));
  }
  return *entry;
}

}  // namespace

void ExecRegistry::begin(const std::string& id, const std::string& vm_id) {
  std::lock_guard guard(mutex_);
  entries_[id] = Entry{.vm_id = vm_id};
}

void ExecRegistry::finish(const std::string& id, Entry entry) {
  {
    std::lock_guard guard(mutex_);
    entry.pending = false;
    entries_[id] = std::move(entry);
  }
  resolved_.notify_all();
}

std::optional<ExecRegistry::Entry> ExecRegistry::get(const std::string& id,
                                                     std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  resolved_.wait_for(lock, timeout, [&] {
    auto found = entries_.find(id);
    return found == entries_.end() || !found->second.pending;
  });
  auto found = entries_.find(id);
  if (found == entries_.end()) return std::nullopt;
  return found->second;
}

void add_exec_routes(http::Router& router, ApiContext& context) {
  router.add("POST", "/v1/vms/{id}/exec", [&context](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(request.json_body());
    auto exec = KILN_TRY(parse_exec(body));
    auto vm = KILN_TRY(context.vms.inspect(std::string(request.param("id"))));
    if (vm.state != daemon::VmState::kRunning) {
      return Error::failed_precondition(
          fmt::format("cannot exec in VM {}: it is {}", vm.name, to_string(vm.state)));
    }
    std::string exec_id = new_exec_id();
    http::HijackReply reply;
    reply.headers.set("X-Kiln-Exec-Id", exec_id);
    reply.content_type =
        exec.process.tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream";
    context.execs.begin(exec_id, vm.id);
    reply.body = [&context, exec = std::move(exec), exec_id, vm_id = vm.id](http::RawConnection connection) {
      agent::ExecIo io{.client = std::move(connection.fd),
                       .tty = exec.process.tty,
                       .attach_stdin = exec.attach_stdin,
                       .attach_stdout = exec.attach_stdout,
                       .attach_stderr = exec.attach_stderr,
                       .already_read_input = std::move(connection.buffered)};
      auto started = context.vms.exec(vm_id, exec.process, io);
      ExecRegistry::Entry entry{.vm_id = vm_id};
      if (started) {
        entry.handle = std::move(*started);
      } else {
        bool agent_error = started.error().category() == ErrorCategory::kNotFound ||
                           started.error().category() == ErrorCategory::kPermissionDenied ||
                           started.error().category() == ErrorCategory::kInvalidArgument;
        entry.start_failure_code = agent_error ? agent::exit_code_for_start_error(started.error()) : 125;
        entry.error = started.error().message();
        // The hub leaves `io` untouched when the start fails, so the socket is still ours.
        report_on_stream(io.client.get(), exec.process.tty, started.error().message());
      }
      context.execs.finish(exec_id, std::move(entry));
    };
    return Reply(std::move(reply));
  });

  router.add("GET", "/v1/vms/{id}/exec/{exec}", [&context](Request& request) -> Result<Reply> {
    auto entry = KILN_TRY(find_exec(context, request));
    Json reply = {
        {"id", request.param("exec")}, {"running", false}, {"exit_code", nullptr}, {"error", entry.error}};
    if (entry.start_failure_code) {
      reply["exit_code"] = *entry.start_failure_code;
    } else if (entry.handle) {
      if (auto status = entry.handle->exit_status()) {
        reply["exit_code"] = status->shell_code();
      } else {
        auto waited = entry.handle->wait(std::chrono::milliseconds(0));
        if (!waited && waited.error().category() != ErrorCategory::kTimeout) {
          reply["error"] = waited.error().message();
        } else {
          reply["running"] = true;
        }
      }
    }
    return Reply(http::json_response(200, reply));
  });

  router.add("POST", "/v1/vms/{id}/exec/{exec}/resize", [&context](Request& request) -> Result<Reply> {
    auto entry = KILN_TRY(find_exec(context, request));
    auto rows = KILN_TRY(dimension(request, "h"));
    auto cols = KILN_TRY(dimension(request, "w"));
    if (!rows || !cols) return Error::invalid_argument("resize needs h and w");
    if (!entry.handle) return Error::failed_precondition("the exec's process never started");
    KILN_TRY(entry.handle->resize({.rows = *rows, .cols = *cols}));
    return Reply(http::empty_response(200));
  });

  router.add("POST", "/v1/vms/{id}/exec/{exec}/signal", [&context](Request& request) -> Result<Reply> {
    auto entry = KILN_TRY(find_exec(context, request));
    auto signum = KILN_TRY(request.query.get_unsigned<unsigned>("signal", 1, 64));
    if (!signum) return Error::invalid_argument("the signal query parameter is required (1 to 64)");
    if (!entry.handle) return Error::failed_precondition("the exec's process never started");
    KILN_TRY(entry.handle->signal(static_cast<int>(*signum)));
    return Reply(http::empty_response(200));
  });
}

}  // namespace kiln::api::rest

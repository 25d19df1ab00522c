// Streams: GET /v1/events (lifecycle events as JSON lines, as `docker events` streams them) and
// GET /v1/vms/{id}/console (the serial console log; follow=1 keeps streaming while the VM runs).
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/rest/rest_api.h"

namespace kiln::api::rest {
namespace {

using http::Reply;
using http::Request;

constexpr size_t kConsoleChunk = size_t{64} * 1024;

Result<std::optional<uint64_t>> number_param(const Request& request, std::string_view key) {
  auto text = request.query.get(key);
  if (!text || text->empty() || *text == "all") return std::optional<uint64_t>();
  return request.query.get_unsigned<uint64_t>(key);
}

// Where the last `lines` lines of the file start.
off_t tail_offset(int fd, uint64_t lines) {
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end <= 0) return 0;
  if (lines == 0) return end;
  off_t position = end;
  uint64_t newlines = 0;
  char buffer[4096];
  // A trailing newline ends the last line; it does not start an empty one.
  bool skip_final_newline = true;
  while (position > 0) {
    off_t chunk = std::min<off_t>(position, sizeof buffer);
    position -= chunk;
    if (::pread(fd, buffer, static_cast<size_t>(chunk), position) != chunk) return 0;
    for (off_t i = chunk - 1; i >= 0; --i) {
      if (buffer[i] != '\n') {
        skip_final_newline = false;
        continue;
      }
      if (skip_final_newline) {
        skip_final_newline = false;
        continue;
      }
      if (++newlines == lines) return position + i + 1;
    }
  }
  return 0;
}

void stream_console(http::ChunkWriter& writer, daemon::VmManager& vms, const std::string& vm_id,
                    const std::string& path, std::optional<uint64_t> tail, bool follow) {
  UniqueFd fd;
  off_t offset = 0;
  bool positioned = false;
  char buffer[kConsoleChunk];
  auto last_state_check = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  bool vm_running = true;
  for (;;) {
    if (!fd) {
      fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd && !positioned) {
        offset = tail ? tail_offset(fd.get(), *tail) : 0;
        positioned = true;
      }
    }
    if (fd) {
      ssize_t got = 0;
      while ((got = ::pread(fd.get(), buffer, sizeof buffer, offset)) > 0) {
        if (!writer.write_chunk(std::string_view(buffer, static_cast<size_t>(got)))) return;
        offset += got;
      }
      // A new boot starts a new log file (the previous one is renamed): follow it.
      struct stat on_disk {
      }, open_file{};
      if (::stat(path.c_str(), &on_disk) == 0 && ::fstat(fd.get(), &open_file) == 0 &&
          on_disk.st_ino != open_file.st_ino) {
        fd.reset();
        offset = 0;
        continue;
      }
    }
    if (!follow || !vm_running) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_state_check > std::chrono::seconds(1)) {
      auto vm = vms.inspect(vm_id);
      vm_running = vm && daemon::has_monitor(vm->state);
      last_state_check = now;
    }
    pollfd client{.fd = writer.poll_fd(), .events = POLLRDHUP, .revents = 0};
    if (::poll(&client, 1, 200) > 0 || writer.client_gone()) return;
  }
}

}  // namespace

void add_stream_routes(http::Router& router, ApiContext& context) {
  router.add("GET", "/v1/events", [&context](Request& request) -> Result<Reply> {
    auto since = KILN_TRY(number_param(request, "since"));
    std::string vm_filter(request.query.get("vm").value_or(""));
    // By name or id; the VM need not exist any more (its "deleted" event is still worth replaying).
    std::string filtered_id;
    if (!vm_filter.empty()) {
      if (auto vm = context.vms.inspect(vm_filter)) filtered_id = vm->id;
    }
    uint64_t after = since ? *since : context.events.last_seq();
    http::StreamReply reply;
    reply.headers.set("Content-Type", "application/x-ndjson");
    reply.body = [&context, after, vm_filter, filtered_id](http::ChunkWriter& writer) mutable {
      // The response head has gone out before this body runs, and `after` was fixed before that: a client
      // that has the head is subscribed, and misses nothing published from then on.
      while (!writer.client_gone() && !context.events.closed()) {
        auto events = context.events.wait_after(after, std::chrono::milliseconds(500));
        std::string lines;
        for (const auto& event : events) {
          after = event.seq;
          if (!vm_filter.empty() && event.id != filtered_id && event.name != vm_filter &&
              event.id != vm_filter)
            continue;
          lines += to_json(event).dump() + "\n";
        }
        if (!lines.empty() && !writer.write_chunk(lines)) return;
      }
    };
    return Reply(std::move(reply));
  });

  router.add("GET", "/v1/vms/{id}/console", [&context](Request& request) -> Result<Reply> {
    auto vm = KILN_TRY(context.vms.inspect(std::string(request.param("id"))));
    auto tail = KILN_TRY(number_param(request, "tail"));
    bool follow = request.query.get_bool("follow");
    std::string path = KILN_TRY(context.vms.console_log_path(vm.id));
    http::StreamReply reply;
    reply.headers.set("Content-Type", "text/plain; charset=utf-8");
    reply.body = [&context, vm_id = vm.id, path, tail, follow](http::ChunkWriter& writer) {
      stream_console(writer, context.vms, vm_id, path, tail, follow);
    };
    return Reply(std::move(reply));
  });
}

}  // namespace kiln::api::rest

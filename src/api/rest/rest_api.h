// The Kiln API v1 (VMs and images) (docs/api/kiln-v1.yaml) and the AppCatalyst-compatible aliases, as routes
// on a Router. Handlers translate HTTP to VmManager calls and back; they hold no VM state of their own except
// the exec sessions' registry. Routes run on the server's connection threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "agent/client/agent_hub.h"
#include "api/http/router.h"
#include "daemon/event_bus.h"
#include "daemon/vm_manager.h"
#include "image/image_store.h"

namespace kiln::api::rest {

// Exec sessions by id, so `GET .../exec/{id}` can report a process's exit code after its stream ended. An
// exec is registered (pending) before its process starts, so a client that reads its stream to the end and
// asks at once never finds it missing. Thread-safe.
class ExecRegistry {
 public:
  struct Entry {
    std::string vm_id;
    bool pending = true;                      // the process is being started
    std::optional<agent::ExecHandle> handle;  // set once started
    std::optional<int> start_failure_code;    // 126/127/125 when it never started
    std::string error;
  };
  void begin(const std::string& id, const std::string& vm_id);
  void finish(const std::string& id, Entry entry);
  // Waits (up to `timeout`) while the exec is pending.
  std::optional<Entry> get(const std::string& id, std::chrono::milliseconds timeout) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable resolved_;
  std::map<std::string, Entry> entries_;
};

struct ApiContext {
  daemon::VmManager& vms;
  daemon::EventBus& events;
  ExecRegistry& execs;
  image::ImageStore& images;
  std::string scratch_dir;  // uploads and saves in flight (<root>/tmp): on disk, not in memory or tmpfs
  std::string engine_name;
  std::string accelerator;
};

void add_vm_routes(http::Router& router, ApiContext& context);
void add_exec_routes(http::Router& router, ApiContext& context);
void add_stream_routes(http::Router& router, ApiContext& context);    // events, console
void add_meta_routes(http::Router& router, ApiContext& context);      // ping, version, openapi
void add_image_routes(http::Router& router, ApiContext& context);     // /v1/images
void add_template_routes(http::Router& router, ApiContext& context);  // /v1/templates
// AppCatalyst's /api/vms...; errors in its {"code", "message"} shape whatever the router's formatter.
void add_appcatalyst_routes(http::Router& router, ApiContext& context);
// AppCatalyst's error body, {"code": 404, "message": "..."}: the formatter of a router serving only its
// routes.
Json appcatalyst_error_body(int status, const Error& error);

// Everything Kiln's main socket serves.
void add_kiln_routes(http::Router& router, ApiContext& context);

}  // namespace kiln::api::rest

// Daemon: one running kilnd. Owns (in order of construction) the root lock, the state store, the event bus,
// the volume manager, the engine, the image store, the VM manager and the HTTP servers; tears them down in
// reverse, releasing running VMs rather than stopping them. Built and run on the main thread; the servers'
// threads call in.
#pragma once

#include <functional>
#include <memory>

#include "common/error.h"
#include "daemon/daemon_options.h"

namespace kiln::daemon {

// Runs kilnd until SIGTERM/SIGINT. `ready` is called once the API sockets accept connections (used by
// --detach to let the launching process return). Returns the process exit code.
int run_daemon(const DaemonOptions& options, const std::function<void(const Error*)>& ready);

}  // namespace kiln::daemon

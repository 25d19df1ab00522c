#include "api/http/listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>

#include "common/unix_socket.h"

namespace kiln::api::http {
namespace {

// A socket file nobody listens on (a crashed kilnd's) is stale and may go; one that accepts a connection
// belongs to a live server and must not be stolen.
Result<void> clear_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return ok();
    return Error::last_os_error(fmt::format("stat {}", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error::already_exists(fmt::format("{} exists and is not a socket; refusing to replace it", path));
  }
  Result<UniqueFd> probe = connect_unix_socket(path);
  if (probe) return Error::already_exists(fmt::format("another server is listening on {}", path));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Error::last_os_error(fmt::format("unlink {}", path));
  return ok();
}

Result<Listener> bind_failed(std::string_view what, const Endpoint& endpoint) {
  return Error::last_os_error(fmt::format("{} {}", what, endpoint.to_string()));
}

}  // namespace

Result<Listener> Listener::bind(const Endpoint& endpoint, int backlog) {
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    std::error_code ec;
    std::filesystem::path parent = std::filesystem::path(endpoint.path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) return Error::from_errno(fmt::format("create {}", parent.string()), ec.value());
    KILN_TRY(clear_stale_socket(endpoint.path));
    UniqueFd fd = KILN_TRY(listen_unix_socket(endpoint.path, backlog));
    // Group access is how non-root users get at the API (as with the docker group).
    if (::chmod(endpoint.path.c_str(), 0660) != 0) return bind_failed("chmod", endpoint);
    struct stat st {};
    if (::stat(endpoint.path.c_str(), &st) != 0) return bind_failed("stat", endpoint);
    return Listener(std::move(fd), endpoint, st.st_ino);
  }

  addrinfo hints{.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  addrinfo* found = nullptr;
  std::string port = std::to_string(endpoint.port);
  int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Error::invalid_argument(
        fmt::format("cannot resolve {}: {}", endpoint.to_string(), ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(found, ::freeaddrinfo);
  UniqueFd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return bind_failed("socket for", endpoint);
  int one = 1;
  // A restarted kilnd must rebind at once, not wait out TIME_WAIT.
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) return bind_failed("bind", endpoint);
  if (::listen(fd.get(), backlog) != 0) return bind_failed("listen", endpoint);

  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0)
    return bind_failed("getsockname", endpoint);
  Endpoint actual = endpoint;
  actual.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return Listener(std::move(fd), std::move(actual), 0);
}

Listener::~Listener() {
  if (!fd_ || endpoint_.kind != Endpoint::Kind::kUnix) return;
  struct stat st {};
  if (::stat(endpoint_.path.c_str(), &st) == 0 && st.st_ino == inode_) (void)::unlink(endpoint_.path.c_str());
}

}  // namespace kiln::api::http

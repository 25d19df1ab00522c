#include "common/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace kiln {
namespace {
Result<sockaddr_un> make_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Error::invalid_argument(fmt::format("unix socket path too long or empty: {}", path));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}
}  // namespace

Result<UniqueFd> connect_unix_socket(const std::string& path, std::string_view what) {
  sockaddr_un address = KILN_TRY(make_address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::last_os_error("socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int error = errno;
    return Error::from_errno(what.empty() ? fmt::format("connect {}", path) : std::string(what), error);
  }
  return fd;
}

Result<UniqueFd> listen_unix_socket(const std::string& path, int backlog) {
  sockaddr_un address = KILN_TRY(make_address(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) (void)::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::last_os_error("socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return Error::last_os_error(fmt::format("bind {}", path));
  }
  if (::listen(fd.get(), backlog) != 0) return Error::last_os_error(fmt::format("listen {}", path));
  return fd;
}

}  // namespace kiln

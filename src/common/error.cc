#include "common/error.h"

#include <cerrno>
#include <cstring>

#include "common/errno_text.h"

namespace kiln {

std::string_view to_string(ErrorCategory category) {
  switch (category) {
    case ErrorCategory::kInvalidArgument:
      return "invalid argument";
    case ErrorCategory::kNotFound:
      return "not found";
    case ErrorCategory::kAlreadyExists:
      return "already exists";
    case ErrorCategory::kFailedPrecondition:
      return "failed precondition";
    case ErrorCategory::kPermissionDenied:
      return "permission denied";
    case ErrorCategory::kUnavailable:
      return "unavailable";
    case ErrorCategory::kTimeout:
      return "timeout";
    case ErrorCategory::kCancelled:
      return "cancelled";
    case ErrorCategory::kProtocol:
      return "protocol error";
    case ErrorCategory::kIo:
      return "I/O error";
    case ErrorCategory::kUnsupported:
      return "unsupported";
    case ErrorCategory::kInternal:
      return "internal error";
  }
  return "unknown";
}

static ErrorCategory category_for_errno(int errnum) {
  switch (errnum) {
    case ENOENT:
    case ESRCH:
    case ENXIO:
      return ErrorCategory::kNotFound;
    case EEXIST:
      return ErrorCategory::kAlreadyExists;
    case EACCES:
    case EPERM:
    case EROFS:
      return ErrorCategory::kPermissionDenied;
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case EXDEV:
      return ErrorCategory::kInvalidArgument;
    case ETIMEDOUT:
      return ErrorCategory::kTimeout;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
      return ErrorCategory::kUnavailable;
    case EINTR:
    case ECANCELED:
      return ErrorCategory::kCancelled;
    case ENOSYS:
    case EOPNOTSUPP:
      return ErrorCategory::kUnsupported;
    default:
      return ErrorCategory::kIo;
  }
}

Error Error::from_errno(std::string_view what, int errnum) {
  return {category_for_errno(errnum), fmt::format("{}: {}", what, errno_text(errnum))};
}

Error Error::last_os_error(std::string_view what) {
  return from_errno(what, errno);
}

Error Error::with_context(std::string_view context) const {
  return {category_, fmt::format("{}: {}", context, message_)};
}

}  // namespace kiln

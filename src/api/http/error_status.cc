#include "api/http/error_status.h"

namespace kiln::api {

int http_status_for(ErrorCategory category) {
  switch (category) {
    case ErrorCategory::kInvalidArgument:
      return 400;
    case ErrorCategory::kPermissionDenied:
      return 403;
    case ErrorCategory::kNotFound:
      return 404;
    case ErrorCategory::kAlreadyExists:
    case ErrorCategory::kFailedPrecondition:
      return 409;
    case ErrorCategory::kCancelled:
      return 500;  // the client went away or the daemon is stopping
    case ErrorCategory::kUnsupported:
      return 501;
    case ErrorCategory::kProtocol:
      return 502;
    case ErrorCategory::kUnavailable:
      return 503;
    case ErrorCategory::kTimeout:
      return 504;
    case ErrorCategory::kIo:
    case ErrorCategory::kInternal:
      return 500;
  }
  return 500;
}

}  // namespace kiln::api

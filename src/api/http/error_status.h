// The one place where an ErrorCategory becomes an HTTP status code, for every API Kiln serves over this HTTP
// layer. Pure function; any thread.
#pragma once

#include "common/error.h"

namespace kiln::api {

int http_status_for(ErrorCategory category);
inline int http_status_for(const Error& error) {
  return http_status_for(error.category());
}

}  // namespace kiln::api

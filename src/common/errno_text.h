// Text for an errno value or a signal number, as strerror(3) and strsignal(3) give it but without their
// shared buffer: glibc's strerrordesc_np/sigdescr_np return constant strings, so any thread may call these.
#pragma once

#include <string.h>

#include <string>

namespace kiln {

inline std::string errno_text(int errnum) {
  if (const char* text = ::strerrordesc_np(errnum)) return text;
  return "Unknown error " + std::to_string(errnum);
}

inline std::string signal_text(int signum) {
  if (const char* text = ::sigdescr_np(signum)) return text;
  return "Unknown signal " + std::to_string(signum);
}

}  // namespace kiln

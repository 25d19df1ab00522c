// Text encodings shared by the HTTP client code of the CLI, the registry client and the APIs:
// percent-encoding for URLs, base64 (RFC 4648) in its standard and URL-safe alphabets.
#pragma once

#include <string>
#include <string_view>

#include "common/error.h"

namespace kiln {

// Percent-encodes everything but RFC 3986 unreserved characters: safe in a path segment or a query value.
std::string percent_encode(std::string_view text);

// Standard alphabet with '=' padding.
std::string base64_encode(std::string_view data);
// URL-safe alphabet ('-', '_') with padding, as Go's base64.URLEncoding (Docker's X-Registry-Auth).
std::string base64url_encode(std::string_view data);
// Either alphabet, padded or not; whitespace is not allowed. kInvalidArgument for anything else.
Result<std::string> base64_decode(std::string_view text);

}  // namespace kiln

// The Kiln VM API's OpenAPI document (docs/api/kiln-v1.yaml), embedded at build time.
#pragma once

#include <string_view>

namespace kiln::api::rest {
extern const std::string_view kOpenApiDocument;
}

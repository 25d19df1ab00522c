// /v1/ping, /v1/version and /v1/openapi.yaml (the API's own description, compiled in from
// docs/api/kiln-v1.yaml so the daemon always serves the document of the API it implements).
#include "api/rest/openapi_document.h"
#include "api/rest/rest_api.h"
#include "kiln/version.h"

namespace kiln::api::rest {

void add_meta_routes(http::Router& router, ApiContext& context) {
  router.add("GET", "/v1/ping", [](http::Request&) -> Result<http::Reply> {
    return http::Reply(http::text_response(200, "OK"));
  });
  router.add("GET", "/v1/version", [&context](http::Request&) -> Result<http::Reply> {
    return http::Reply(http::json_response(200, {{"version", kVersion},
                                                 {"api_version", "v1"},
                                                 {"engine", context.engine_name},
                                                 {"accelerator", context.accelerator}}));
  });
  router.add("GET", "/v1/openapi.yaml", [](http::Request&) -> Result<http::Reply> {
    return http::Reply(http::text_response(200, std::string(kOpenApiDocument), "application/yaml"));
  });
}

}  // namespace kiln::api::rest

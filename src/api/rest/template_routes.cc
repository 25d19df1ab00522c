// /v1/templates: kilnd's fork templates (docs/fork.md): list them with the running VMs forked from each,
// build one ahead of need, remove one no running VM uses.
#include "api/rest/rest_api.h"
#include "api/rest/vm_json.h"

namespace kiln::api::rest {

using http::Reply;
using http::Request;

void add_template_routes(http::Router& router, ApiContext& context) {
  daemon::VmManager& vms = context.vms;
  router.add("GET", "/v1/templates", [&vms](Request&) -> Result<Reply> {
    Json array = Json::array();
    for (const auto& info : KILN_TRY(vms.list_templates())) array.push_back(template_to_json(info));
    return Reply(http::json_response(200, array));
  });
  router.add("POST", "/v1/templates", [&vms](Request& request) -> Result<Reply> {
    Json body = request.body.empty() ? Json(nullptr) : KILN_TRY(request.json_body());
    WarmTemplateRequest warm = KILN_TRY(parse_warm_template(body));
    daemon::TemplateInfo info = KILN_TRY(vms.warm_template(warm.cpus, warm.memory_mib));
    return Reply(http::json_response(200, template_to_json(info)));
  });
  router.add("DELETE", "/v1/templates/{key}", [&vms](Request& request) -> Result<Reply> {
    KILN_TRY(vms.remove_template(std::string(request.param("key"))));
    return Reply(http::empty_response(204));
  });
}

}  // namespace kiln::api::rest

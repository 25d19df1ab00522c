// The Kiln VM API's JSON: VMs as clients see them, and strict parsing of create/update requests (unknown
// fields, wrong types and out-of-range numbers are kInvalidArgument naming the field). Pure; any thread.
#pragma once

#include "common/json.h"
#include "daemon/vm_manager.h"
#include "engine/template_pool.h"

namespace kiln::api::rest {

Json vm_to_json(const daemon::VmRecord& vm);
// The IPv4 addresses a running VM holds, one per NIC (empty when it runs on no network or is stopped).
Json addresses_json(const daemon::VmRecord& vm);
Result<std::vector<daemon::PortPublication>> parse_ports(const Json& body);
Json folder_to_json(const daemon::SharedFolder& folder);

Result<daemon::CreateVmRequest> parse_create_vm(const Json& body);
Result<daemon::UpdateVmRequest> parse_update_vm(const Json& body);
// POST /v1/vms/{id}/clone: {"name": "...", "start": true}, both optional (an empty body clones and starts).
Result<daemon::CloneVmRequest> parse_clone_vm(const Json& body);
Result<daemon::SharedFolder> parse_shared_folder(const Json& body);
Result<daemon::ExecRequest> parse_exec(const Json& body);

// Fork templates (/v1/templates).
Json template_to_json(const daemon::TemplateInfo& info);
// POST /v1/templates: {"cpus": N, "memory_mib": M}, both optional (a container VM's defaults).
struct WarmTemplateRequest {
  std::optional<unsigned> cpus;
  std::optional<uint64_t> memory_mib;
};
Result<WarmTemplateRequest> parse_warm_template(const Json& body);

}  // namespace kiln::api::rest

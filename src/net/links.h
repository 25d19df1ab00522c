// Link operations inside the calling thread's network namespace (call them on a NamespaceThread): bridges,
// taps, addresses, and a listing. Bridges and taps use the classic ioctls (SIOCBRADDBR, TUNSETIFF...), which
// act on the namespace of the socket or thread that issues them; the listing is an rtnetlink dump.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "net/fabric.h"

namespace kiln::net::links {

// Linux interface names: 1-15 bytes, no '/', no whitespace.
Result<void> validate_name(const std::string& name);
// Creates a bridge (EEXIST is fine: an existing bridge is kept). Its STP is off, so a new port forwards at
// once (a VM's first packets do not wait in a learning state).
Result<void> add_bridge(const std::string& name);
// Takes the link down and deletes it. Absent: ok.
Result<void> delete_bridge(const std::string& name);
Result<void> set_up(const std::string& name);
// Sets `cidr` ("172.17.0.1/16") as the link's IPv4 address.
Result<void> set_ipv4(const std::string& name, const std::string& cidr);
// A new tap ("ktap%d"), with a virtio-net header, up; attached to `bridge` unless it is empty.
Result<UniqueFd> open_tap(const std::string& bridge, std::string* name);
Result<void> attach_to_bridge(const std::string& link, const std::string& bridge);
// Takes `link` off `bridge`. Not on it (or gone): ok.
Result<void> detach_from_bridge(const std::string& link, const std::string& bridge);
Result<std::vector<LinkInfo>> list();
bool exists(const std::string& name);

}  // namespace kiln::net::links

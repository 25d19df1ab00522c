#include "daemon/networks/network_manager.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>

#include "common/log.h"
#include "common/random_id.h"
#include "common/rfc3339.h"

namespace kiln::daemon::networks {
namespace {

constexpr std::string_view kUserBridgePrefix = "br-";
constexpr uint16_t kDnsPort = 53;

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

Error pool_overlap() {
  return Error(ErrorCategory::kPermissionDenied, "Pool overlaps with other one on this address space");
}

// Bad input that dockerd answers with 500, its error carrying no kind: kInternal keeps the status the same.
Error unkinded_error(std::string message) {
  return Error(ErrorCategory::kInternal, std::move(message));
}

Error gateway_error(std::string_view gateway, std::string_view why) {
  return unkinded_error(fmt::format("failed to allocate gateway ({}): {}", gateway, why));
}

Error ipv6_unsupported() {
  return Error::invalid_argument(
      "IPv6 is not supported by Kiln's networks: containers get IPv4 addresses only (leave out --ipv6 and "
      "IPv6 subnets)");
}

// The default network as dockerd shows its options, with Kiln's bridge name.
std::map<std::string, std::string> default_bridge_options() {
  return {{"com.docker.network.bridge.default_bridge", "true"},
          {"com.docker.network.bridge.enable_icc", "true"},
          {"com.docker.network.bridge.enable_ip_masquerade", "true"},
          {"com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"},
          {"com.docker.network.bridge.name", std::string(kDefaultBridge)},
          {"com.docker.network.driver.mtu", "1500"}};
}

}  // namespace

// A network and what lives with it while kilnd runs: its address table, the VMs on it, its DNS zone.
struct NetworkManager::Live {
  NetworkRecord record;
  std::optional<Subnet> subnet;  // bridge networks only
  std::optional<Subnet> range;   // where VMs' addresses come from: ip_range, else the subnet
  Ipv4 gateway = 0;
  std::set<Ipv4> reserved;                           // the gateway and auxiliary addresses
  std::map<Ipv4, std::string> allocated;             // address -> VM id
  std::map<std::string, NetworkEndpoint> endpoints;  // VM id -> its endpoint
  Ipv4 last_allocated = 0;                           // addresses are handed out in turn, as dockerd's
  ServiceHandle dns;

  static Result<std::unique_ptr<Live>> from(NetworkRecord record) {
    auto live = std::make_unique<Live>();
    if (!record.ipam.empty()) {
      const IpamConfig& config = record.ipam.front();
      live->subnet = parse_subnet(config.subnet);
      auto gateway = parse_ipv4(config.gateway);
      if (!live->subnet || !gateway)
        return Error::internal(fmt::format("kiln.db: network {} has a bad subnet or gateway", record.name));
      live->gateway = *gateway;
      live->range = config.ip_range.empty() ? live->subnet : parse_subnet(config.ip_range);
      if (!live->range)
        return Error::internal(fmt::format("kiln.db: network {} has a bad ip range", record.name));
      live->reserved.insert(*gateway);
      for (const auto& [name, address] : config.auxiliary_addresses) {
        if (auto parsed = parse_ipv4(address)) live->reserved.insert(*parsed);
      }
      live->last_allocated = *gateway;
    }
    live->record = std::move(record);
    return live;
  }

  bool usable(Ipv4 address) const {
    return subnet && subnet->contains(address) && address != subnet->base && address != subnet->last() &&
           !reserved.contains(address) && !allocated.contains(address);
  }

  // The next free address after the last one handed out, wrapping around the range.
  std::optional<Ipv4> next_free() const {
    if (!range) return std::nullopt;
    uint64_t size = uint64_t{1} << (32 - range->prefix);
    uint64_t start = range->contains(last_allocated) ? last_allocated - range->base + 1 : 0;
    for (uint64_t step = 0; step < size; ++step) {
      Ipv4 candidate = range->base + static_cast<Ipv4>((start + step) % size);
      if (usable(candidate)) return candidate;
    }
    return std::nullopt;
  }

  std::vector<std::string> names_of(std::string_view ipv4) const {
    for (const auto& [vm, endpoint] : endpoints) {
      if (endpoint.ipv4 == ipv4) return endpoint.names;
    }
    return {};
  }
};

std::string host_network_unsupported_message() {
  return "network mode \"host\" is not supported by Kiln: every container is a virtual machine with its own "
         "kernel and network stack, so it cannot share the host's; publish the ports it serves instead "
         "(-p HOST_PORT:CONTAINER_PORT)";
}

Result<void> validate_static_address(const NetworkRecord& network, const std::string& ipv4) {
  if (ipv4.empty()) return ok();
  if (looks_like_ipv6(ipv4)) return ipv6_unsupported();
  if (network.name == kDefaultNetwork)
    return Error::invalid_argument("user specified IP address is supported on user defined networks only");
  if (network.ipam.empty() || !network.ipam.front().subnet_given) {
    return Error::invalid_argument(
        "user specified IP address is supported only when connecting to networks with user configured "
        "subnets");
  }
  auto address = parse_ipv4(ipv4);
  if (!address) return Error::invalid_argument(fmt::format("invalid IPv4 address: {}", ipv4));
  auto subnet = parse_subnet(network.ipam.front().subnet);
  if (!subnet || !subnet->contains(*address)) {
    return Error::invalid_argument(
        fmt::format("no configured subnet or ip-range contain the IP address {}", ipv4));
  }
  return ok();
}

NetworkManager::NetworkManager(store::Database& db, NetworkManagerConfig config)
    : table_(db, "networks", "network"),
      config_(std::move(config)),
      outbound_(parse_subnet(config_.outbound_cidr)) {}

NetworkManager::~NetworkManager() {
  // DNS zones and proxies stop before the tables their lookups read go away.
  std::map<std::string, std::unique_ptr<Live>> networks;
  std::map<std::string, std::vector<ServiceHandle>> published;
  {
    std::lock_guard lock(mutex_);
    networks.swap(networks_);
    published.swap(published_);
  }
  for (auto& [id, live] : networks) live->dns.reset();
}

Result<std::unique_ptr<NetworkManager>> NetworkManager::open(store::Database& db, NetworkManagerConfig config,
                                                             VmStore* vms) {
  std::unique_ptr<NetworkManager> manager(new NetworkManager(db, std::move(config)));
  KILN_TRY(manager->recover(vms));
  return manager;
}

Result<NetworkRecord> NetworkManager::insert_predefined(std::string name, std::string driver) {
  NetworkRecord network;
  network.id = KILN_TRY(random_hex_id());
  network.name = std::move(name);
  network.driver = std::move(driver);
  network.created = now_rfc3339(TimePrecision::kNanosTrimmed);
  network.predefined = true;
  if (network.name == kDefaultNetwork) {
    network.ipam.push_back(
        {.subnet = "172.17.0.0/16", .gateway = "172.17.0.1", .gateway_shown = true, .subnet_given = false});
    network.options = default_bridge_options();
    network.bridge = std::string(kDefaultBridge);
  }
  KILN_TRY(table_.insert(network.id, network.name, to_storage_json(network).dump()));
  return network;
}

Result<void> NetworkManager::recover(VmStore* vms) {
  std::vector<NetworkRecord> records;
  for (const std::string& text : KILN_TRY(table_.list())) {
    auto json = KILN_TRY_CONTEXT(parse_json(text), "kiln.db: network record");
    records.push_back(KILN_TRY(network_from_storage_json(json)));
  }
  for (auto [name, driver] :
       {std::pair{kDefaultNetwork, "bridge"}, {kNoneNetwork, "null"}, {kHostNetwork, "host"}}) {
    bool present = std::any_of(records.begin(), records.end(),
                               [name = name](const NetworkRecord& network) { return network.name == name; });
    if (!present) records.push_back(KILN_TRY(insert_predefined(std::string(name), driver)));
  }

  std::lock_guard lock(mutex_);
  std::set<std::string> bridges;
  for (NetworkRecord& record : records) {
    auto live = KILN_TRY(Live::from(std::move(record)));
    if (!live->record.bridge.empty()) bridges.insert(live->record.bridge);
    // A network whose bridge cannot be made now stays listed (and removable); its VMs fail to start, saying
    // why.
    if (auto up = bring_up(*live); !up) {
      log::warn("network not brought up", {{"network", live->record.name}, {"error", up.error().message()}});
    }
    networks_.emplace(live->record.id, std::move(live));
  }
  if (config_.fabric != nullptr) {
    auto present = config_.fabric->bridges();
    for (const std::string& bridge : present ? *present : std::vector<std::string>()) {
      bool ours = bridge == kDefaultBridge || bridge.starts_with(kUserBridgePrefix);
      if (!ours || bridges.contains(bridge)) continue;
      log::info("removing a bridge no network owns", {{"bridge", bridge}});
      if (auto removed = config_.fabric->remove_bridge(bridge); !removed)
        log::warn("could not remove a stale bridge",
                  {{"bridge", bridge}, {"error", removed.error().message()}});
    }
  }
  if (vms != nullptr) {
    for (const VmRecord& vm : KILN_TRY(vms->list())) {
      if (!has_monitor(vm.state)) continue;
      for (const VmNic& nic : vm.nics) {
        if (auto reserved = reserve_locked(vm, nic); !reserved)
          log::warn("address of a running VM not reserved",
                    {{"vm", vm.id}, {"error", reserved.error().message()}});
      }
    }
  }
  return ok();
}

Result<void> NetworkManager::bring_up(Live& live) {
  if (live.record.bridge.empty() || config_.fabric == nullptr || !live.subnet) return ok();
  std::string gateway = format_ipv4(live.gateway);
  KILN_TRY(config_.fabric->ensure_bridge(
      live.record.bridge, fmt::format("{}/{}", gateway, live.subnet->prefix), live.record.internal));
  if (config_.dns == nullptr || live.dns) return ok();
  std::string context = fmt::format("DNS for network {}", live.record.name);
  UniqueFd udp = KILN_TRY_CONTEXT(config_.fabric->bound_socket(SOCK_DGRAM, gateway, kDnsPort), context);
  UniqueFd tcp = KILN_TRY_CONTEXT(config_.fabric->bound_socket(SOCK_STREAM, gateway, kDnsPort), context);
  NameLookup lookup;
  std::string id = live.record.id;
  // Docker's default network resolves no container names: its server only forwards.
  bool names = live.record.name != kDefaultNetwork;
  lookup.forward = [this, id, names](std::string_view name, std::string_view client_ip) {
    return names ? lookup_name(id, name, client_ip) : std::vector<std::string>();
  };
  // A PTR answers the first name with the network's: "web.mynet", as Docker's.
  lookup.reverse = [this, id, names, network = live.record.name](std::string_view ipv4) {
    std::vector<std::string> found = names ? lookup_address(id, ipv4) : std::vector<std::string>();
    return found.empty() ? std::optional<std::string>()
                         : std::optional<std::string>(found.front() + "." + network);
  };
  if (names) lookup.network_name = live.record.name;
  live.dns = KILN_TRY(config_.dns->serve(std::move(udp), std::move(tcp), std::move(lookup)));
  return ok();
}

// ---- create, get, list, remove ----------------------------------------------------------------------------

Result<IpamConfig> NetworkManager::plan_ipam(const CreateNetwork& request) {
  if (request.ipam.size() > 1)
    return Error(ErrorCategory::kPermissionDenied, "bridge driver doesn't support multiple subnets");
  IpamConfig given = request.ipam.empty() ? IpamConfig{} : request.ipam.front();
  if (looks_like_ipv6(given.subnet) || looks_like_ipv6(given.gateway) || looks_like_ipv6(given.ip_range))
    return ipv6_unsupported();
  std::vector<Subnet> taken;
  for (const auto& [id, live] : networks_) {
    if (live->subnet) taken.push_back(*live->subnet);
  }
  if (outbound_) taken.push_back(*outbound_);
  auto overlaps = [&taken](const Subnet& subnet) {
    return std::any_of(taken.begin(), taken.end(),
                       [&subnet](const Subnet& other) { return other.overlaps(subnet); });
  };

  IpamConfig planned = given;
  Subnet subnet;
  if (!given.subnet.empty()) {
    bool host_bits = false;
    auto parsed = parse_subnet(given.subnet, &host_bits);
    if (!parsed) {
      return unkinded_error(
          fmt::format("Invalid subnet {} : invalid CIDR address: {}", given.subnet, given.subnet));
    }
    // dockerd keeps "10.1.0.5/24" as given and then finds it overlapping its own canonical form.
    if (host_bits || overlaps(*parsed)) return pool_overlap();
    if (parsed->prefix > 30) {
      return Error::invalid_argument(fmt::format(
          "subnet {} is too small: a network needs room for a gateway and a container", given.subnet));
    }
    subnet = *parsed;
    planned.subnet = subnet.to_string();
    planned.subnet_given = true;
  } else {
    if (!given.gateway.empty()) return unkinded_error("Invalid subnet  : invalid CIDR address: ");
    const std::vector<Subnet>& pools = default_pools();
    std::optional<size_t> found;
    for (size_t step = 0; step < pools.size() && !found; ++step) {
      size_t index = (next_pool_ + step) % pools.size();
      if (!overlaps(pools[index])) found = index;
    }
    if (!found) {
      return Error(
          ErrorCategory::kPermissionDenied,
          "could not find an available, non-overlapping IPv4 address pool among the defaults to assign "
          "to the network");
    }
    next_pool_ = *found + 1;
    subnet = pools[*found];
    planned.subnet = subnet.to_string();
    planned.gateway_shown = true;
  }

  if (!given.ip_range.empty()) {
    auto range = parse_subnet(given.ip_range);
    if (!range) {
      return unkinded_error(
          fmt::format("Invalid ip range {} : invalid CIDR address: {}", given.ip_range, given.ip_range));
    }
    if (!subnet.contains(*range))
      return Error::invalid_argument(fmt::format("no matching subnet for range {}", given.ip_range));
    planned.ip_range = range->to_string();
  }
  if (given.gateway.empty()) {
    planned.gateway = format_ipv4(subnet.base + 1);
  } else {
    auto gateway = parse_ipv4(given.gateway);
    if (!gateway) return Error::invalid_argument(fmt::format("invalid gateway address {}", given.gateway));
    if (!subnet.contains(*gateway)) return gateway_error(given.gateway, "Requested address is out of range");
    if (*gateway == subnet.base || *gateway == subnet.last())
      return gateway_error(given.gateway, "Address already in use");
    planned.gateway_shown = true;
  }
  for (const auto& [name, address] : given.auxiliary_addresses) {
    auto parsed = parse_ipv4(address);
    if (!parsed || !subnet.contains(*parsed)) {
      return Error::invalid_argument(fmt::format(
          "auxiliary address: ({}:{}) must belong to the master pool: {}", name, address, planned.subnet));
    }
  }
  return planned;
}

Result<NetworkRecord> NetworkManager::create(const CreateNetwork& request) {
  std::vector<ServiceHandle> dropped;  // outlives the lock: a failed create's DNS zone stops after it
  std::lock_guard lock(mutex_);
  return create_locked(request, dropped);
}

Result<NetworkRecord> NetworkManager::create_locked(const CreateNetwork& request,
                                                    std::vector<ServiceHandle>& dropped) {
  std::string driver = request.driver.empty() ? "bridge" : request.driver;
  if (request.name == kDefaultNetwork || request.name == kNoneNetwork || request.name == kHostNetwork) {
    return Error(ErrorCategory::kPermissionDenied,
                 fmt::format("operation is not permitted on predefined {} network ", request.name));
  }
  if (request.name.empty()) return unkinded_error("invalid name: ");
  if (driver == "host" || driver == "null")
    return Error(ErrorCategory::kPermissionDenied,
                 fmt::format("only one instance of \"{}\" network is allowed", driver));
  if (driver != "bridge") return Error::not_found(fmt::format("plugin \"{}\" not found", driver));
  if (!request.ipam_driver.empty() && request.ipam_driver != "default")
    return Error::not_found(fmt::format("plugin \"{}\" not found", request.ipam_driver));
  if (request.ingress)
    return Error(ErrorCategory::kPermissionDenied, "Ingress network can only be global scope network");
  for (const auto& [id, live] : networks_) {
    if (live->record.name == request.name)
      return Error::already_exists(fmt::format("network with name {} already exists", request.name));
  }
  if (request.enable_ipv6) return ipv6_unsupported();

  size_t pool_before = next_pool_;
  auto planned = plan_ipam(request);
  if (!planned) return planned.error();

  NetworkRecord network;
  network.id = KILN_TRY(random_hex_id());
  network.name = request.name;
  network.driver = driver;
  network.created = now_rfc3339(TimePrecision::kNanosTrimmed);
  network.ipam.push_back(*std::move(planned));
  network.ipam_options = request.ipam_options;
  network.ipam_options_given = request.ipam_options_given;
  network.internal = request.internal;
  network.attachable = request.attachable;
  network.labels = request.labels;
  network.options = request.options;
  network.bridge = std::string(kUserBridgePrefix) + network.id.substr(0, 12);

  auto live = KILN_TRY(Live::from(network));
  // The row first, then the bridge: a kill in between leaves a network whose bridge open() makes.
  if (auto inserted = table_.insert(network.id, network.name, to_storage_json(network).dump()); !inserted) {
    next_pool_ = pool_before;
    if (inserted.error().category() == ErrorCategory::kAlreadyExists)
      return Error::already_exists(fmt::format("network with name {} already exists", request.name));
    return inserted.error();
  }
  if (auto up = bring_up(*live); !up) {
    dropped.push_back(std::move(live->dns));
    if (config_.fabric != nullptr) (void)config_.fabric->remove_bridge(network.bridge);
    if (auto removed = table_.remove(network.id); !removed)
      log::warn("could not undo a failed network create", {{"network", network.name}});
    next_pool_ = pool_before;
    return up.error().with_context(fmt::format("create network {}", network.name));
  }
  networks_.emplace(network.id, std::move(live));
  publish("create", network);
  return network;
}

Result<NetworkManager::Live*> NetworkManager::find_locked(const std::string& reference) {
  if (!reference.empty()) {
    if (auto it = networks_.find(reference); it != networks_.end()) return it->second.get();
    for (auto& [id, live] : networks_) {
      if (live->record.name == reference) return live.get();
    }
    Live* match = nullptr;
    size_t matches = 0;
    for (auto& [id, live] : networks_) {
      if (id.starts_with(reference)) {
        match = live.get();
        ++matches;
      }
    }
    if (matches == 1) return match;
    if (matches > 1) {
      return Error::invalid_argument(
          fmt::format("network {} is ambiguous ({} matches found based on ID prefix)", reference, matches));
    }
  }
  return Error::not_found(fmt::format("network {} not found", reference));
}

Result<NetworkRecord> NetworkManager::get(const std::string& reference) {
  std::lock_guard lock(mutex_);
  return KILN_TRY(find_locked(reference))->record;
}

Result<std::vector<NetworkRecord>> NetworkManager::list() {
  std::vector<NetworkRecord> networks;
  std::lock_guard lock(mutex_);
  for (const auto& [id, live] : networks_) networks.push_back(live->record);
  std::stable_sort(networks.begin(), networks.end(),
                   [](const NetworkRecord& a, const NetworkRecord& b) { return a.created < b.created; });
  return networks;
}

Result<void> NetworkManager::remove(const std::string& reference) {
  ServiceHandle dns;
  std::lock_guard lock(mutex_);
  Live* live = KILN_TRY(find_locked(reference));
  const NetworkRecord& network = live->record;
  if (network.predefined) {
    return Error(ErrorCategory::kPermissionDenied,
                 fmt::format("{} is a pre-defined network and cannot be removed", network.name));
  }
  if (!live->endpoints.empty()) {
    return Error(ErrorCategory::kPermissionDenied,
                 fmt::format("error while removing network: network {} id {} has active endpoints",
                             network.name, network.id));
  }
  // The bridge first: a kill in between leaves a row whose bridge open() makes again.
  if (config_.fabric != nullptr) KILN_TRY(config_.fabric->remove_bridge(network.bridge));
  if (auto removed = table_.remove(network.id); !removed) {
    if (auto up = bring_up(*live); !up)
      log::warn("could not restore a network's bridge", {{"network", network.name}});
    return removed.error();
  }
  publish("destroy", network);
  auto it = networks_.find(network.id);
  dns = std::move(it->second->dns);
  networks_.erase(it);
  return ok();  // `dns` is dropped after the lock (declared before it): its threads may wait on a lookup
}

Result<std::vector<std::string>> NetworkManager::prune(
    const std::function<bool(const NetworkRecord&)>& selected) {
  std::vector<NetworkRecord> candidates;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, live] : networks_) {
      if (!live->record.predefined && live->endpoints.empty() && selected(live->record))
        candidates.push_back(live->record);
    }
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const NetworkRecord& a, const NetworkRecord& b) { return a.created < b.created; });
  std::vector<std::string> removed;
  for (const NetworkRecord& network : candidates) {
    // A VM may have joined it since: remove() checks again.
    if (remove(network.id)) removed.push_back(network.name);
  }
  if (config_.events != nullptr)
    config_.events->publish({.type = "network", .action = "prune", .attributes = Json::object()});
  return removed;
}

// ---- endpoints and names ----------------------------------------------------------------------------------

std::vector<NetworkEndpoint> NetworkManager::endpoints(const std::string& network_id) const {
  std::lock_guard lock(mutex_);
  std::vector<NetworkEndpoint> result;
  if (auto it = networks_.find(network_id); it != networks_.end()) {
    for (const auto& [vm, endpoint] : it->second->endpoints) result.push_back(endpoint);
  }
  return result;
}

std::vector<std::string> NetworkManager::lookup_name(const std::string& network_id, std::string_view name,
                                                     std::string_view client_ip) const {
  std::lock_guard lock(mutex_);
  auto it = networks_.find(network_id);
  if (it == networks_.end()) return {};
  std::vector<std::string> addresses = names_on_locked(*it->second, name);
  if (!addresses.empty() || client_ip.empty()) return addresses;
  // Docker's resolver answers a container's names on all of its networks: the asking VM's other
  // user-defined networks, in turn.
  const Live& asked = *it->second;
  auto asker = std::find_if(asked.endpoints.begin(), asked.endpoints.end(),
                            [&](const auto& entry) { return entry.second.ipv4 == client_ip; });
  if (asker == asked.endpoints.end()) return addresses;
  for (const auto& [id, live] : networks_) {
    if (id == network_id || live->record.name == kDefaultNetwork || !live->endpoints.contains(asker->first))
      continue;
    addresses = names_on_locked(*live, name);
    if (!addresses.empty()) break;
  }
  return addresses;
}

std::vector<std::string> NetworkManager::names_on_locked(const Live& live, std::string_view name) const {
  std::vector<std::string> addresses;
  // "web.", and "web.NETWORK" as Docker's DNS also answers.
  if (name.ends_with('.')) name.remove_suffix(1);
  std::string_view network_name = live.record.name;
  if (name.size() > network_name.size() + 1 && name[name.size() - network_name.size() - 1] == '.' &&
      equal_ignoring_case(name.substr(name.size() - network_name.size()), network_name))
    name.remove_suffix(network_name.size() + 1);
  for (const auto& [vm, endpoint] : live.endpoints) {
    bool named = std::any_of(endpoint.names.begin(), endpoint.names.end(),
                             [name](const std::string& own) { return equal_ignoring_case(own, name); });
    if (named) addresses.push_back(endpoint.ipv4);
  }
  return addresses;
}

std::vector<std::string> NetworkManager::lookup_address(const std::string& network_id,
                                                        std::string_view ipv4) const {
  std::lock_guard lock(mutex_);
  auto it = networks_.find(network_id);
  return it == networks_.end() ? std::vector<std::string>() : it->second->names_of(ipv4);
}

// ---- VmNetworking -----------------------------------------------------------------------------------------

Result<VmNic> NetworkManager::join_locked(const VmRecord& vm, const VmNetworkRequest& request, size_t slot) {
  Live& live = *KILN_TRY(find_locked(request.network));
  if (live.record.driver == "host") return Error::invalid_argument(host_network_unsupported_message());
  if (!live.subnet) {
    return Error::invalid_argument(
        fmt::format("network {} gives a VM no NIC: leave it out of the VM's networks", live.record.name));
  }
  if (live.endpoints.contains(vm.id)) {
    return Error(
        ErrorCategory::kPermissionDenied,
        fmt::format("endpoint with name {} already exists in network {}", vm.name, live.record.name));
  }
  Ipv4 address = 0;
  if (!request.ipv4.empty()) {
    KILN_TRY(validate_static_address(live.record, request.ipv4));
    address = *parse_ipv4(request.ipv4);
    if (!live.usable(address)) return Error(ErrorCategory::kPermissionDenied, "Address already in use");
  } else {
    auto next = live.next_free();
    if (!next) {
      return Error(ErrorCategory::kPermissionDenied,
                   fmt::format("no available IPv4 addresses on this network's address pools: {} ({})",
                               live.record.name, live.record.id));
    }
    address = *next;
    live.last_allocated = address;
  }
  std::string endpoint_id = KILN_TRY(random_hex_id());
  NetworkEndpoint endpoint{.vm_id = vm.id,
                           .vm_name = vm.name,
                           .owner = vm.owner,
                           .endpoint_id = endpoint_id,
                           .mac = request.mac.empty() ? mac_for(address) : request.mac,
                           .ipv4 = format_ipv4(address),
                           .prefix_length = live.subnet->prefix,
                           .names = request.aliases};
  if (vm.owner.empty() &&
      std::find(endpoint.names.begin(), endpoint.names.end(), vm.name) == endpoint.names.end())
    endpoint.names.push_back(vm.name);
  live.allocated.emplace(address, vm.id);
  live.endpoints.emplace(vm.id, endpoint);
  return VmNic{.network_id = live.record.id,
               .network_name = live.record.name,
               .endpoint_id = endpoint.endpoint_id,
               .bridge = live.record.bridge,
               .mac = endpoint.mac,
               .ipv4 = endpoint.ipv4,
               .prefix_length = endpoint.prefix_length,
               .gateway = live.record.internal ? "" : format_ipv4(live.gateway),
               // The gateway's address runs the network's DNS server (on internal networks too).
               .dns = {format_ipv4(live.gateway)},
               .aliases = endpoint.names,
               .slot = slot};
}

void NetworkManager::leave_locked(const std::string& vm_id, const std::string& network_id) {
  auto it = networks_.find(network_id);
  if (it == networks_.end()) return;
  Live& live = *it->second;
  live.endpoints.erase(vm_id);
  std::erase_if(live.allocated, [&vm_id](const auto& entry) { return entry.second == vm_id; });
}

Result<NetworkAttachment> NetworkManager::attach(const VmRecord& vm, size_t nic_slots,
                                                 const std::vector<std::string>& existing_taps) {
  NetworkAttachment attachment;
  nic_slots = std::max(nic_slots, vm.networks.size());
  if (!existing_taps.empty() && existing_taps.size() != nic_slots) {
    return Error::internal(fmt::format("VM {} has {} NIC slots but its monitor has {} taps", vm.name,
                                       nic_slots, existing_taps.size()));
  }
  if (nic_slots == 0 && vm.ports.empty()) return attachment;
  if (config_.fabric == nullptr) {
    return Error::unsupported(
        "networking is not available: kilnd runs without its network namespace, so a VM can get no NIC");
  }
  std::vector<ServiceHandle> dropped;  // a failed attach's proxies close after the lock
  std::vector<ServiceHandle> proxies;
  std::vector<NetworkRecord> joined;
  auto failed = [&](const Error& error) -> Error {
    release_locked(vm.id, dropped);
    for (ServiceHandle& proxy : proxies) dropped.push_back(std::move(proxy));
    // An existing tap put on a bridge goes back to being on none; a tap opened here closes (and is gone).
    for (size_t i = 0; i < attachment.nics.size() && !existing_taps.empty(); ++i)
      (void)config_.fabric->detach_tap(existing_taps[i], attachment.nics[i].bridge);
    return error;
  };
  std::unique_lock lock(mutex_);
  for (const VmNetworkRequest& request : vm.networks) {
    auto nic = join_locked(vm, request, attachment.nics.size());
    if (!nic) return failed(nic.error());
    NicTap tap;
    if (existing_taps.empty()) {
      auto opened = config_.fabric->open_tap(nic->bridge, &tap.name);
      if (!opened) return failed(opened.error().with_context(fmt::format("network {}", nic->network_name)));
      tap.fd = *std::move(opened);
    } else {
      tap.name = existing_taps[attachment.taps.size()];
      if (auto attached = config_.fabric->attach_tap(tap.name, nic->bridge); !attached) {
        (void)config_.fabric->detach_tap(tap.name, nic->bridge);
        return failed(attached.error().with_context(fmt::format("network {}", nic->network_name)));
      }
    }
    attachment.taps.push_back(std::move(tap));
    joined.push_back(networks_.at(nic->network_id)->record);
    attachment.nics.push_back(*std::move(nic));
  }
  while (!existing_taps.empty() && attachment.taps.size() < nic_slots)
    attachment.taps.push_back({.name = existing_taps[attachment.taps.size()]});
  while (attachment.taps.size() < nic_slots) {
    NicTap spare;
    auto opened = config_.fabric->open_detached_tap(&spare.name);
    if (!opened) return failed(opened.error().with_context("a spare NIC slot"));
    spare.fd = *std::move(opened);
    attachment.taps.push_back(std::move(spare));
  }

  for (const PortPublication& port : vm.ports) {
    if (attachment.nics.empty()) {
      return failed(Error::invalid_argument(
          "ports are published to a VM's first network, and this VM has none (--network none)"));
    }
    if (config_.ports == nullptr)
      return failed(Error::unsupported("publishing ports is not available in this kilnd (no port proxy)"));
    const VmNic& target = attachment.nics.front();
    auto listener = config_.ports->listen({.protocol = port.protocol,
                                           .host_ip = port.host_ip,
                                           .host_port = port.host_port,
                                           .host_port_last = port.host_port_last,
                                           .target_ip = target.ipv4,
                                           .target_port = port.guest_port});
    if (!listener) {
      return failed(
          Error(listener.error().category(),
                fmt::format("driver failed programming external connectivity on endpoint {} ({}): {}",
                            vm.name, target.endpoint_id, listener.error().message())));
    }
    PortPublication published = port;
    published.host_port = listener->port;
    published.host_port_last = 0;
    attachment.published.push_back(published);
    proxies.push_back(std::move(listener->handle));
  }
  if (!proxies.empty()) published_[vm.id] = std::move(proxies);
  lock.unlock();
  for (const NetworkRecord& network : joined)
    publish("connect", network, {{"container", vm.owner.empty() ? vm.id : vm.owner}});
  return attachment;
}

void NetworkManager::release_locked(const std::string& vm_id, std::vector<ServiceHandle>& dropped) {
  for (auto& [id, live] : networks_) {
    if (live->endpoints.erase(vm_id) == 0) continue;
    std::erase_if(live->allocated, [&vm_id](const auto& entry) { return entry.second == vm_id; });
  }
  if (auto it = published_.find(vm_id); it != published_.end()) {
    for (ServiceHandle& handle : it->second) dropped.push_back(std::move(handle));
    published_.erase(it);
  }
}

void NetworkManager::detach(const VmRecord& vm) {
  std::vector<ServiceHandle> dropped;  // proxies close after the lock
  std::vector<NetworkRecord> left;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, live] : networks_) {
      if (live->endpoints.contains(vm.id)) left.push_back(live->record);
    }
    release_locked(vm.id, dropped);
  }
  for (const NetworkRecord& network : left)
    publish("disconnect", network, {{"container", vm.owner.empty() ? vm.id : vm.owner}});
}

Result<VmNic> NetworkManager::connect(const VmRecord& vm, const VmNetworkRequest& request, size_t slot,
                                      const std::string& tap) {
  if (config_.fabric == nullptr) {
    return Error::unsupported(
        "networking is not available: kilnd runs without its network namespace, so a VM can get no NIC");
  }
  std::unique_lock lock(mutex_);
  VmNic nic = KILN_TRY(join_locked(vm, request, slot));
  if (auto attached = config_.fabric->attach_tap(tap, nic.bridge); !attached) {
    leave_locked(vm.id, nic.network_id);
    return attached.error().with_context(fmt::format("network {}", nic.network_name));
  }
  NetworkRecord network = networks_.at(nic.network_id)->record;
  lock.unlock();
  publish("connect", network, {{"container", vm.owner.empty() ? vm.id : vm.owner}});
  return nic;
}

Result<void> NetworkManager::disconnect(const VmRecord& vm, const VmNic& nic) {
  std::unique_lock lock(mutex_);
  if (config_.fabric != nullptr && nic.slot < vm.nic_taps.size())
    KILN_TRY(config_.fabric->detach_tap(vm.nic_taps[nic.slot], nic.bridge));
  std::optional<NetworkRecord> network;
  if (auto it = networks_.find(nic.network_id); it != networks_.end()) network = it->second->record;
  leave_locked(vm.id, nic.network_id);
  lock.unlock();
  if (network) publish("disconnect", *network, {{"container", vm.owner.empty() ? vm.id : vm.owner}});
  return ok();
}

Result<void> NetworkManager::reserve_locked(const VmRecord& vm, const VmNic& nic) {
  Live* live = KILN_TRY(find_locked(nic.network_id.empty() ? nic.network_name : nic.network_id));
  auto address = parse_ipv4(nic.ipv4);
  if (!address || !live->subnet || !live->subnet->contains(*address))
    return Error::invalid_argument(
        fmt::format("address {} is not in network {}", nic.ipv4, live->record.name));
  if (auto it = live->allocated.find(*address); it != live->allocated.end()) {
    if (it->second == vm.id) return ok();  // reserved at open, adopted now
    return Error(ErrorCategory::kPermissionDenied, fmt::format("address {} on network {} is held by VM {}",
                                                               nic.ipv4, live->record.name, it->second));
  }
  live->allocated.emplace(*address, vm.id);
  live->endpoints[vm.id] = NetworkEndpoint{.vm_id = vm.id,
                                           .vm_name = vm.name,
                                           .owner = vm.owner,
                                           .endpoint_id = nic.endpoint_id,
                                           .mac = nic.mac,
                                           .ipv4 = nic.ipv4,
                                           .prefix_length = nic.prefix_length,
                                           .names = nic.aliases};
  return ok();
}

Result<void> NetworkManager::adopt(const VmRecord& vm) {
  std::vector<ServiceHandle> dropped;
  std::vector<ServiceHandle> proxies;
  std::unique_lock lock(mutex_);
  auto failed = [&](const Error& error) -> Error {
    release_locked(vm.id, dropped);
    for (ServiceHandle& proxy : proxies) dropped.push_back(std::move(proxy));
    return error;
  };
  for (const VmNic& nic : vm.nics) {
    if (auto reserved = reserve_locked(vm, nic); !reserved) return failed(reserved.error());
  }
  // A spare slot's tap is on no bridge; one a kilnd killed half-way through a connect left on a bridge (the
  // record never got its NIC) is taken off again.
  for (size_t slot = 0; config_.fabric != nullptr && slot < vm.nic_taps.size(); ++slot) {
    if (std::any_of(vm.nics.begin(), vm.nics.end(), [slot](const VmNic& nic) { return nic.slot == slot; }))
      continue;
    for (const auto& [id, live] : networks_) {
      if (live->subnet) (void)config_.fabric->detach_tap(vm.nic_taps[slot], live->record.bridge);
    }
  }
  if (!vm.published.empty() && config_.ports == nullptr)
    return failed(Error::unsupported("publishing ports is not available in this kilnd (no port proxy)"));
  for (const PortPublication& port : vm.published) {
    if (vm.nics.empty()) break;
    auto listener = config_.ports->listen({.protocol = port.protocol,
                                           .host_ip = port.host_ip,
                                           .host_port = port.host_port,
                                           .target_ip = vm.nics.front().ipv4,
                                           .target_port = port.guest_port});
    if (!listener) return failed(listener.error());
    proxies.push_back(std::move(listener->handle));
  }
  if (!proxies.empty()) published_[vm.id] = std::move(proxies);
  return ok();
}

void NetworkManager::publish(std::string action, const NetworkRecord& network, Json attributes) {
  if (config_.events == nullptr) return;
  attributes["name"] = network.name;
  attributes["type"] = network.driver;
  config_.events->publish({.type = "network",
                           .action = std::move(action),
                           .id = network.id,
                           .attributes = std::move(attributes)});
}

}  // namespace kiln::daemon::networks

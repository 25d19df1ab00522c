// NetworkManager: kilnd's Docker networks. Each network is a row of kiln.db's networks table and, for the
// bridge driver, a bridge in Kiln's network namespace (NetworkFabric) with its gateway's address and a DNS
// zone listening there; the predefined bridge (the default network, 172.17.0.0/16 on "kiln0"), none and host
// always exist. It also implements VmManager's VmNetworking: an address (IPAM), a tap and DNS names on each
// network a starting VM asks for, and its published ports.
//
// Names, messages and error kinds are dockerd 20.10's (libnetwork, daemon/network.go). Create and remove keep
// the row and the bridge in step: a create writes its row only after the subnet is checked and undoes it if
// the bridge or DNS zone fails; a remove deletes the bridge first and puts it back if the row cannot go;
// open() makes every network's bridge (after a reboot) and deletes bridges no row names.
//
// Thread-safe: HTTP connection threads, VmManager (from a VM's lock) and DNS server threads (name lookups)
// call in directly. One mutex guards the networks and the address table; fabric calls run under it, and DNS
// zones and proxies are only ever dropped outside it (their threads take it for lookups).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "daemon/event_bus.h"
#include "daemon/networks/ipv4.h"
#include "daemon/networks/network_record.h"
#include "daemon/networks/network_services.h"
#include "daemon/state/document_table.h"
#include "daemon/state/vm_store.h"
#include "daemon/vm_manager.h"
#include "store/database.h"

namespace kiln::daemon::networks {

struct NetworkManagerConfig {
  NetworkFabric* fabric = nullptr;  // nullptr: records only, and attach refuses (no Kiln namespace)
  DnsService* dns = nullptr;        // nullptr: no DNS zones
  PortPublisher* ports = nullptr;   // nullptr: a VM with ports fails to start, saying why
  // The Fabric's outbound NAT subnet (FabricConfig::outbound_cidr): no network may overlap it.
  std::string outbound_cidr = "10.0.2.0/24";
  EventBus* events = nullptr;  // dockerd's network events (create, destroy, connect, disconnect, prune)
};

// POST /networks/create, as parsed: IPAM entries as given (empty strings for what was left out).
struct CreateNetwork {
  std::string name;
  std::string driver;  // "" is "bridge"
  bool internal = false;
  bool attachable = false;
  bool ingress = false;
  bool enable_ipv6 = false;
  std::string ipam_driver;  // "" is "default"
  std::vector<IpamConfig> ipam;
  std::map<std::string, std::string> ipam_options;
  bool ipam_options_given = false;
  std::map<std::string, std::string> options;
  std::map<std::string, std::string> labels;
};

// A running VM's place on a network (what inspect's Containers shows).
struct NetworkEndpoint {
  std::string vm_id;
  std::string vm_name;
  std::string owner;  // the container's id, "" for a plain VM
  std::string endpoint_id;
  std::string mac;
  std::string ipv4;
  int prefix_length = 0;
  std::vector<std::string> names;  // DNS names on this network
};

class NetworkManager final : public VmNetworking {
 public:
  // Creates the predefined networks on first use, makes every bridge network's bridge and DNS zone, and
  // deletes bridges of Kiln's names that no network owns. `vms`, when given: addresses and names of VMs
  // recorded running are reserved at once, so that no new VM gets one before VmManager::recover adopts or
  // detaches them.
  static Result<std::unique_ptr<NetworkManager>> open(store::Database& db, NetworkManagerConfig config,
                                                      VmStore* vms = nullptr);
  ~NetworkManager() override;
  NetworkManager(const NetworkManager&) = delete;
  NetworkManager& operator=(const NetworkManager&) = delete;

  Result<NetworkRecord> create(const CreateNetwork& request);
  // By exact id, exact name, then unique id prefix (dockerd's order). kNotFound "network X not found".
  Result<NetworkRecord> get(const std::string& reference);
  Result<std::vector<NetworkRecord>> list();  // oldest first
  // kPermissionDenied for a predefined network or one with running VMs on it, in dockerd's words.
  Result<void> remove(const std::string& reference);
  // Removes every user-defined network without running VMs that `selected` accepts; their names.
  Result<std::vector<std::string>> prune(const std::function<bool(const NetworkRecord&)>& selected);

  // Running VMs on the network, by VM id.
  std::vector<NetworkEndpoint> endpoints(const std::string& network_id) const;
  // The network's name table (what its DNS zone answers): a name's addresses (any case; "NAME.NETWORK" and a
  // trailing dot too, as Docker's DNS), an address's names.
  // `client_ip`: the asker's address on that network; then names on its other user-defined networks answer
  // too (as Docker's resolver), when the network itself has none.
  std::vector<std::string> lookup_name(const std::string& network_id, std::string_view name,
                                       std::string_view client_ip = {}) const;
  std::vector<std::string> lookup_address(const std::string& network_id, std::string_view ipv4) const;

  // VmNetworking.
  using VmNetworking::attach;
  Result<NetworkAttachment> attach(const VmRecord& vm, size_t nic_slots,
                                   const std::vector<std::string>& existing_taps) override;
  void detach(const VmRecord& vm) override;
  Result<void> adopt(const VmRecord& vm) override;
  Result<VmNic> connect(const VmRecord& vm, const VmNetworkRequest& request, size_t slot,
                        const std::string& tap) override;
  Result<void> disconnect(const VmRecord& vm, const VmNic& nic) override;

 private:
  struct Live;
  NetworkManager(store::Database& db, NetworkManagerConfig config);
  Result<void> recover(VmStore* vms);
  Result<NetworkRecord> create_locked(const CreateNetwork& request, std::vector<ServiceHandle>& dropped);
  Result<IpamConfig> plan_ipam(const CreateNetwork& request);
  Result<void> bring_up(Live& live);  // bridge and DNS zone; under mutex_
  Result<Live*> find_locked(const std::string& reference);
  std::vector<std::string> names_on_locked(const Live& live, std::string_view name) const;
  Result<NetworkRecord> insert_predefined(std::string name, std::string driver);
  Result<void> reserve_locked(const VmRecord& vm, const VmNic& nic);
  void release_locked(const std::string& vm_id, std::vector<ServiceHandle>& dropped);
  // An address and DNS names for `vm` on the request's network, in NIC slot `slot` (no tap yet).
  Result<VmNic> join_locked(const VmRecord& vm, const VmNetworkRequest& request, size_t slot);
  // Undoes join_locked: the VM's endpoint and address on one network.
  void leave_locked(const std::string& vm_id, const std::string& network_id);
  void publish(std::string action, const NetworkRecord& network, Json attributes = Json::object());

  DocumentTable table_;
  NetworkManagerConfig config_;
  std::optional<Subnet> outbound_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Live>> networks_;        // by id
  std::map<std::string, std::vector<ServiceHandle>> published_;  // VM id -> its port proxies
  size_t next_pool_ = 0;  // dockerd's predefinedStartIndex: pools are handed out round-robin
};

// Why `--network host` cannot work (and what to do instead): a VM has its own kernel and network stack.
std::string host_network_unsupported_message();

// dockerd's check of a container's --ip on `network`: only on a network with a user-configured subnet, and
// inside that subnet. kInvalidArgument in dockerd's words.
Result<void> validate_static_address(const NetworkRecord& network, const std::string& ipv4);

}  // namespace kiln::daemon::networks

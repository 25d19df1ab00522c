#include "daemon/networks/network_record.h"

#include <fmt/format.h>

namespace kiln::daemon::networks {

Json to_storage_json(const NetworkRecord& network) {
  Json ipam = Json::array();
  for (const IpamConfig& config : network.ipam) {
    ipam.push_back({{"subnet", config.subnet},
                    {"gateway", config.gateway},
                    {"ip_range", config.ip_range},
                    {"auxiliary_addresses", config.auxiliary_addresses},
                    {"gateway_shown", config.gateway_shown},
                    {"subnet_given", config.subnet_given}});
  }
  return {{"id", network.id},
          {"name", network.name},
          {"driver", network.driver},
          {"created", network.created},
          {"ipam", ipam},
          {"ipam_options", network.ipam_options},
          {"ipam_options_given", network.ipam_options_given},
          {"internal", network.internal},
          {"attachable", network.attachable},
          {"labels", network.labels},
          {"options", network.options},
          {"bridge", network.bridge},
          {"predefined", network.predefined}};
}

Result<NetworkRecord> network_from_storage_json(const Json& json) {
  if (!json.is_object() || !json.contains("id") || !json["id"].is_string())
    return Error::internal("kiln.db: a network record without an id");
  NetworkRecord network;
  using StringMap = std::map<std::string, std::string>;
  try {
    network.id = json["id"].get<std::string>();
    network.name = json.value("name", "");
    network.driver = json.value("driver", "bridge");
    network.created = json.value("created", "");
    for (const Json& config : json.value("ipam", Json::array())) {
      network.ipam.push_back({.subnet = config.value("subnet", ""),
                              .gateway = config.value("gateway", ""),
                              .ip_range = config.value("ip_range", ""),
                              .auxiliary_addresses = config.value("auxiliary_addresses", StringMap()),
                              .gateway_shown = config.value("gateway_shown", false),
                              .subnet_given = config.value("subnet_given", false)});
    }
    network.ipam_options = json.value("ipam_options", StringMap());
    network.ipam_options_given = json.value("ipam_options_given", false);
    network.internal = json.value("internal", false);
    network.attachable = json.value("attachable", false);
    network.labels = json.value("labels", StringMap());
    network.options = json.value("options", StringMap());
    network.bridge = json.value("bridge", "");
    network.predefined = json.value("predefined", false);
  } catch (const Json::exception& error) {
    return Error::internal(fmt::format("kiln.db: network {}: {}", network.id, error.what()));
  }
  return network;
}

}  // namespace kiln::daemon::networks

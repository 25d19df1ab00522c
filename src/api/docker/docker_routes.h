// Internal to src/api/docker: how route files register on the Docker router. Every handler is wrapped so that
// a request for an API version outside the served range is refused in dockerd's words, and every answer
// carries the headers dockerd sends on all responses (API-Version, OSType, Docker-Experimental, Server).
#pragma once

#include "api/docker/docker_api.h"
#include "api/http/router.h"

namespace kiln::api::docker {

class DockerRoutes {
 public:
  explicit DockerRoutes(http::Router& router) : router_(router) {}
  void add(std::string method, std::string_view pattern, http::Handler handler);
  void add_streaming_body(std::string method, std::string_view pattern, http::Handler handler);

 private:
  http::Router& router_;
};

// The headers dockerd puts on every answer.
void add_server_headers(http::Headers& headers);

void add_system_routes(DockerRoutes& routes, DockerContext& context);  // _ping, version, info, system/df
void add_image_routes(DockerRoutes& routes, DockerContext& context);   // /images/...
void add_event_routes(DockerRoutes& routes, DockerContext& context);   // /events
// /containers/..., /exec/...
void add_container_routes(DockerRoutes& routes, DockerContext& context);
void add_volume_routes(DockerRoutes& routes, DockerContext& context);   // /volumes/...
void add_network_routes(DockerRoutes& routes, DockerContext& context);  // /networks/...

// The Volumes of /system/df: each local volume with its UsageData (size of its data, containers using it).
Result<Json> volumes_disk_usage(DockerContext& context);

// /containers/{id}/archive, /export, /changes, /commit (container_file_routes.cc)
void add_container_file_routes(DockerRoutes& routes, DockerContext& context);

}  // namespace kiln::api::docker

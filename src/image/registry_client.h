// RegistryClient: the OCI distribution API (registry HTTP API v2) over libcurl, for one registry host:
// manifests and blobs, uploads (monolithic, chunked, cross-repository mount), and the auth dance
// (anonymous, Basic, Bearer tokens from a WWW-Authenticate challenge). Registries are untrusted: bodies are
// size-capped and nothing read here is trusted until the caller verifies its digest.
// Thread-safe: requests may run concurrently (each borrows its own curl handle from a pool).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "image/digest.h"

namespace kiln::image {

struct RegistryCredentials {
  std::string username;
  std::string password;
};

// A parsed WWW-Authenticate header (RFC 7235): scheme plus auth-params, e.g.
// Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull".
struct AuthChallenge {
  std::string scheme;  // lower-case: "bearer", "basic"
  std::map<std::string, std::string> params;
};
Result<AuthChallenge> parse_auth_challenge(std::string_view header);

// Credentials for `domain` from a Docker CLI config.json, looked up as the docker CLI does: a credential
// helper named for the registry in "credHelpers", else the "credsStore" helper (`docker-credential-NAME get`
// on PATH), else "auths": {"host": {"auth": base64(user:pass)}}. Docker Hub's key is
// "https://index.docker.io/v1/". nullopt when none (or the helper has none).
Result<std::optional<RegistryCredentials>> credentials_from_docker_config(const std::string& config_path,
                                                                          const std::string& domain);

// Docker's X-Registry-Auth header: base64url of {"username", "password", "serveraddress"}. The CLI sends
// it, the daemon decodes it; the daemon never reads a user's config.json.
std::string encode_registry_auth(const RegistryCredentials& credentials, std::string_view server_address);
// nullopt for an empty header or one without a username ("{}", what docker sends without credentials);
// kInvalidArgument for one that is not base64 JSON.
Result<std::optional<RegistryCredentials>> decode_registry_auth(std::string_view header);

// True for localhost, 127.0.0.0/8 and ::1 (with or without a port).
bool is_loopback_registry(std::string_view domain);

struct RegistryOptions {
  bool plain_http = false;  // http:// instead of https:// (insecure or loopback registries only)
  std::optional<RegistryCredentials> credentials;
  // Scopes asked for when a token is needed, e.g. "repository:team/app:pull,push".
  std::vector<std::string> scopes;
  int max_attempts = 4;  // per request, with exponential backoff on network errors, 5xx and 429
};

struct FetchedManifest {
  std::string content_type;
  std::string body;
  std::optional<std::string> docker_content_digest;
};

class RegistryClient {
 public:
  // `domain` as in an ImageRef ("docker.io" is reached at registry-1.docker.io).
  static Result<std::unique_ptr<RegistryClient>> create(const std::string& domain, RegistryOptions options);
  ~RegistryClient();

  // GET /v2/<repository>/manifests/<reference> (tag or digest), accepting Docker schema2 and OCI documents.
  Result<FetchedManifest> get_manifest(const std::string& repository, const std::string& reference);
  // GET /v2/<repository>/blobs/<digest>, streaming the body to `sink`; `on_bytes` sees the running total.
  // One attempt: the caller retries (with a fresh sink) on kUnavailable.
  Result<void> get_blob(const std::string& repository, const Digest& digest,
                        const std::function<Result<void>(std::string_view)>& sink,
                        const std::function<void(uint64_t)>& on_bytes);
  // HEAD /v2/<repository>/blobs/<digest>.
  Result<bool> has_blob(const std::string& repository, const Digest& digest);
  // POST .../blobs/uploads/?mount=<digest>&from=<source>. True if mounted (201): no upload needed.
  Result<bool> mount_blob(const std::string& repository, const Digest& digest,
                          const std::string& source_repository);
  // Uploads `size` bytes read from `fd` as blob `digest`: one PUT, or PATCH chunks of `chunk_size` then a
  // PUT.
  Result<void> upload_blob(const std::string& repository, const Digest& digest, int fd, uint64_t size,
                           uint64_t chunk_size, const std::function<void(uint64_t)>& on_bytes);
  // PUT /v2/<repository>/manifests/<reference>. Returns the digest the registry reports.
  Result<Digest> put_manifest(const std::string& repository, const std::string& reference,
                              const std::string& media_type, const std::string& body);

  const std::string& base_url() const { return base_url_; }

 private:
  struct Request;
  struct Response;
  class HandlePool;
  RegistryClient(std::string base_url, RegistryOptions options);

  // Sends with the current authorization; on 401 answers the challenge once and resends. Retries transient
  // failures when the request has no streaming sink.
  Result<Response> send(Request& request);
  Result<Response> send_once(Request& request);
  Result<void> authenticate(const std::string& challenge_header);
  std::string url_for(std::string_view path) const;
  std::string resolve_location(const std::string& location) const;
  std::string authorization();

  std::string base_url_;
  RegistryOptions options_;
  std::unique_ptr<HandlePool> handles_;
  std::mutex auth_mutex_;
  std::string authorization_;  // "Bearer ..." / "Basic ..." once a challenge was answered
};

}  // namespace kiln::image

#include "image/registry_client.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>

#include "common/child_process.h"
#include "common/encoding.h"
#include "common/json.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "image/manifest.h"

namespace kiln::image {
namespace {

constexpr size_t kMaxManifestBytes = size_t{4} << 20;
constexpr size_t kMaxErrorBodyBytes = size_t{64} << 10;

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// "https://index.docker.io/v1/" -> "index.docker.io"; "host:5000" -> "host:5000".
std::string config_key_host(std::string_view key) {
  if (auto scheme = key.find("://"); scheme != std::string_view::npos) key = key.substr(scheme + 3);
  return std::string(key.substr(0, key.find('/')));
}

// Distribution spec error bodies: {"errors":[{"code":"...","message":"..."}]}.
std::string registry_error_text(const std::string& body) {
  auto json = parse_json(body);
  if (!json || !json->is_object() || !json->contains("errors") || !(*json)["errors"].is_array()) return "";
  std::string text;
  for (const Json& error : (*json)["errors"]) {
    if (!error.is_object()) continue;
    if (!text.empty()) text += "; ";
    text += fmt::format("{}: {}", error.value("code", "UNKNOWN"), error.value("message", ""));
  }
  return text;
}

// libcurl needs one process-wide init before any thread uses it.
void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

Result<AuthChallenge> parse_auth_challenge(std::string_view header) {
  size_t i = 0;
  auto skip_space = [&] {
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t')) ++i;
  };
  skip_space();
  size_t start = i;
  while (i < header.size() && header[i] != ' ') ++i;
  AuthChallenge challenge{.scheme = to_lower(header.substr(start, i - start))};
  if (challenge.scheme.empty()) return Error::protocol("empty WWW-Authenticate header");
  while (i < header.size()) {
    skip_space();
    if (i < header.size() && header[i] == ',') {
      ++i;
      continue;
    }
    start = i;
    while (i < header.size() && header[i] != '=' && header[i] != ',') ++i;
    std::string key = to_lower(header.substr(start, i - start));
    while (!key.empty() && key.back() == ' ') key.pop_back();
    if (i >= header.size() || header[i] != '=') {
      if (!key.empty()) challenge.params[key] = "";
      continue;
    }
    ++i;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      while (i < header.size() && header[i] != '"') {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value.push_back(header[i++]);
      }
      if (i >= header.size())
        return Error::protocol(fmt::format("unterminated quote in WWW-Authenticate: {}", header));
      ++i;
    } else {
      start = i;
      while (i < header.size() && header[i] != ',') ++i;
      value = std::string(header.substr(start, i - start));
      while (!value.empty() && value.back() == ' ') value.pop_back();
    }
    challenge.params[key] = value;
  }
  return challenge;
}

namespace {

// Asks a docker credential helper (`docker-credential-NAME get`, the server address on stdin) as the
// docker CLI does. "Not found" is anonymous access, not an error.
Result<std::optional<RegistryCredentials>> credentials_from_helper(const std::string& helper,
                                                                   const std::string& server_address) {
  if (helper.empty() || helper.find('/') != std::string::npos)
    return Error::invalid_argument(fmt::format("invalid docker credential helper name \"{}\"", helper));
  std::string program = "docker-credential-" + helper;
  auto output = run_command({program, "get"}, server_address);
  if (!output) {
    return Error::not_found(fmt::format("docker credential helper {} (named in the docker config): {}",
                                        program, output.error().message()));
  }
  if (!output->status.success()) {
    std::string said = output->stdout_text + output->stderr_text;
    if (said.find("credentials not found") != std::string::npos) return std::optional<RegistryCredentials>();
    while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
    return Error(ErrorCategory::kPermissionDenied,
                 fmt::format("{} get {}: {} ({})", program, server_address, said, output->status.describe()));
  }
  auto json = parse_json(output->stdout_text);
  if (!json || !json->is_object())
    return Error::protocol(fmt::format("{} get: answer is not a JSON object", program));
  std::string username = json->value("Username", "");
  std::string secret = json->value("Secret", "");
  if (username == "<token>") {
    return Error::unsupported(
        fmt::format("{} holds an identity token for {}; Kiln needs a username and password (use --user)",
                    program, server_address));
  }
  if (username.empty() && secret.empty()) return std::optional<RegistryCredentials>();
  return std::optional<RegistryCredentials>(RegistryCredentials{.username = username, .password = secret});
}

}  // namespace

Result<std::optional<RegistryCredentials>> credentials_from_docker_config(const std::string& config_path,
                                                                          const std::string& domain) {
  auto text = read_file(config_path, size_t{1} << 20);
  if (!text) {
    if (text.error().category() == ErrorCategory::kNotFound) return std::optional<RegistryCredentials>();
    return text.error().with_context("docker config");
  }
  Json config = KILN_TRY_CONTEXT(parse_json(*text), config_path);
  if (!config.is_object()) return std::optional<RegistryCredentials>();
  std::string wanted = domain == "docker.io" ? "index.docker.io" : domain;
  auto host_of = [](const std::string& key) {
    std::string host = config_key_host(key);
    return host == "registry-1.docker.io" || host == "docker.io" ? std::string("index.docker.io") : host;
  };
  // As the docker CLI: a helper for this registry (credHelpers), else the default store (credsStore), else
  // the plain "auths" entries. A configured helper's answer is final.
  std::string server_address = wanted == "index.docker.io" ? "https://index.docker.io/v1/" : wanted;
  if (auto helpers = config.find("credHelpers"); helpers != config.end() && helpers->is_object()) {
    for (const auto& [key, helper] : helpers->items()) {
      if (host_of(key) == wanted && helper.is_string())
        return credentials_from_helper(helper.get<std::string>(), server_address);
    }
  }
  if (auto store = config.find("credsStore");
      store != config.end() && store->is_string() && !store->get<std::string>().empty())
    return credentials_from_helper(store->get<std::string>(), server_address);
  if (!config.contains("auths") || !config["auths"].is_object()) return std::optional<RegistryCredentials>();
  for (const auto& [key, entry] : config["auths"].items()) {
    if (host_of(key) != wanted || !entry.is_object()) continue;
    if (entry.contains("auth") && entry["auth"].is_string() && !entry["auth"].get<std::string>().empty()) {
      std::string decoded = KILN_TRY_CONTEXT(base64_decode(entry["auth"].get<std::string>()),
                                             fmt::format("{}: auths[{}].auth", config_path, key));
      auto colon = decoded.find(':');
      if (colon == std::string::npos)
        return Error::invalid_argument(
            fmt::format("{}: auths[{}].auth is not user:password", config_path, key));
      return std::optional<RegistryCredentials>(
          RegistryCredentials{.username = decoded.substr(0, colon), .password = decoded.substr(colon + 1)});
    }
    if (entry.contains("username") && entry.contains("password")) {
      return std::optional<RegistryCredentials>(RegistryCredentials{.username = entry.value("username", ""),
                                                                    .password = entry.value("password", "")});
    }
  }
  return std::optional<RegistryCredentials>();
}

std::string encode_registry_auth(const RegistryCredentials& credentials, std::string_view server_address) {
  Json auth = {{"username", credentials.username},
               {"password", credentials.password},
               {"serveraddress", server_address}};
  return base64url_encode(auth.dump());
}

Result<std::optional<RegistryCredentials>> decode_registry_auth(std::string_view header) {
  if (header.empty()) return std::optional<RegistryCredentials>();
  auto invalid = [](std::string_view why) {
    return Error::invalid_argument(fmt::format("invalid X-Registry-Auth header: {}", why));
  };
  auto decoded = base64_decode(header);
  if (!decoded) return invalid(decoded.error().message());
  auto json = parse_json(*decoded);
  if (!json || !json->is_object()) return invalid("not a JSON object");
  auto text = [&](const char* key) -> Result<std::string> {
    auto it = json->find(key);
    if (it == json->end() || it->is_null()) return std::string();
    if (!it->is_string()) return invalid(fmt::format("{} must be a string", key));
    return it->get<std::string>();
  };
  std::string username = KILN_TRY(text("username"));
  std::string password = KILN_TRY(text("password"));
  if (username.empty()) return std::optional<RegistryCredentials>();
  return std::optional<RegistryCredentials>(RegistryCredentials{.username = username, .password = password});
}

bool is_loopback_registry(std::string_view domain) {
  std::string_view host = domain;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') - 1);
    return host == "::1";
  }
  host = host.substr(0, host.find(':'));
  return host == "localhost" || host.starts_with("127.");
}

// Idle curl easy handles, reused so connections (and TLS sessions) survive between requests.
class RegistryClient::HandlePool {
 public:
  ~HandlePool() {
    for (CURL* handle : idle_) curl_easy_cleanup(handle);
  }
  CURL* take() {
    std::lock_guard lock(mutex_);
    if (idle_.empty()) return curl_easy_init();
    CURL* handle = idle_.back();
    idle_.pop_back();
    return handle;
  }
  void give(CURL* handle) {
    std::lock_guard lock(mutex_);
    idle_.push_back(handle);
  }

 private:
  std::mutex mutex_;
  std::vector<CURL*> idle_;
};

struct RegistryClient::Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  std::string body;  // sent when method is PUT/PATCH/POST and body_fd < 0
  int body_fd = -1;  // upload source: body_size bytes from body_offset
  uint64_t body_offset = 0;
  uint64_t body_size = 0;
  const std::function<Result<void>(std::string_view)>* sink = nullptr;  // 2xx body goes here
  const std::function<void(uint64_t)>* on_bytes = nullptr;
  size_t body_limit = kMaxManifestBytes;
  bool send_authorization = true;
  std::string authorization_override;
};

struct RegistryClient::Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::vector<std::string> challenges;         // every WWW-Authenticate
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

namespace {

struct TransferState {
  CURL* handle;
  RegistryClient* client;
  std::string* body;
  std::map<std::string, std::string>* headers;
  std::vector<std::string>* challenges;
  const std::function<Result<void>(std::string_view)>* sink;
  const std::function<void(uint64_t)>* on_bytes;
  size_t body_limit;
  uint64_t received = 0;
  // Upload source.
  std::string_view memory_body;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t remaining = 0;
  uint64_t sent = 0;
  std::optional<Error> error;
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {  // a new response (after a redirect or 100-continue)
    state->headers->clear();
    state->challenges->clear();
    return size * count;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * count;
  std::string name = to_lower(line.substr(0, colon));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  if (name == "www-authenticate") state->challenges->emplace_back(value);
  (*state->headers)[name] = std::string(value);
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  std::string_view chunk(data, size * count);
  long status = 0;
  curl_easy_getinfo(state->handle, CURLINFO_RESPONSE_CODE, &status);
  if (state->sink && status >= 200 && status < 300) {
    auto written = (*state->sink)(chunk);
    if (!written) {
      state->error = std::move(written).error();
      return 0;
    }
    state->received += chunk.size();
    if (state->on_bytes) (*state->on_bytes)(state->received);
    return chunk.size();
  }
  size_t limit = state->sink ? kMaxErrorBodyBytes : state->body_limit;
  if (state->body->size() + chunk.size() > limit) {
    state->error = Error::protocol(fmt::format("registry response larger than {} bytes", limit));
    return 0;
  }
  state->body->append(chunk);
  return chunk.size();
}

size_t on_upload(char* buffer, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  size_t want = std::min<uint64_t>(size * count, state->remaining);
  if (want == 0) return 0;
  size_t got = 0;
  if (state->fd >= 0) {
    ssize_t n = ::pread(state->fd, buffer, want, static_cast<off_t>(state->offset));
    if (n <= 0) {
      state->error =
          n < 0 ? Error::last_os_error("read upload") : Error::internal("upload source ended early");
      return CURL_READFUNC_ABORT;
    }
    got = static_cast<size_t>(n);
  } else {
    got = want;
    std::copy_n(state->memory_body.data() + state->sent, got, buffer);
  }
  state->offset += got;
  state->remaining -= got;
  state->sent += got;
  if (state->on_bytes) (*state->on_bytes)(state->sent);
  return got;
}

Error status_error(const std::string& what, long status, const std::string& body) {
  std::string detail = registry_error_text(body);
  std::string message = fmt::format("{}: HTTP {}{}{}", what, status, detail.empty() ? "" : ": ", detail);
  if (status == 401 || status == 403) return {ErrorCategory::kPermissionDenied, message};
  if (status == 404) return Error::not_found(message);
  if (status == 429 || status >= 500) return Error::unavailable(message);
  return Error::protocol(message);
}

}  // namespace

RegistryClient::RegistryClient(std::string base_url, RegistryOptions options)
    : base_url_(std::move(base_url)),
      options_(std::move(options)),
      handles_(std::make_unique<HandlePool>()) {}

RegistryClient::~RegistryClient() = default;

Result<std::unique_ptr<RegistryClient>> RegistryClient::create(const std::string& domain,
                                                               RegistryOptions options) {
  init_curl_once();
  std::string host = domain == "docker.io" ? "registry-1.docker.io" : domain;
  std::string base = fmt::format("{}://{}", options.plain_http ? "http" : "https", host);
  return std::unique_ptr<RegistryClient>(new RegistryClient(std::move(base), std::move(options)));
}

std::string RegistryClient::url_for(std::string_view path) const {
  return base_url_ + std::string(path);
}

std::string RegistryClient::resolve_location(const std::string& location) const {
  if (location.starts_with("http://") || location.starts_with("https://")) return location;
  if (location.starts_with('/')) return base_url_ + location;
  return base_url_ + "/" + location;
}

std::string RegistryClient::authorization() {
  std::lock_guard lock(auth_mutex_);
  return authorization_;
}

Result<RegistryClient::Response> RegistryClient::send_once(Request& request) {
  CURL* handle = handles_->take();
  if (!handle) return Error::internal("curl_easy_init failed");
  curl_easy_reset(handle);
  Response response;
  TransferState state{.handle = handle,
                      .client = this,
                      .body = &response.body,
                      .headers = &response.headers,
                      .challenges = &response.challenges,
                      .sink = request.sink,
                      .on_bytes = request.on_bytes,
                      .body_limit = request.body_limit};
  curl_slist* headers = nullptr;
  for (const std::string& header : request.headers) headers = curl_slist_append(headers, header.c_str());
  std::string auth = request.authorization_override.empty() && request.send_authorization
                         ? authorization()
                         : request.authorization_override;
  if (!auth.empty()) headers = curl_slist_append(headers, ("Authorization: " + auth).c_str());
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(handle, CURLOPT_USERAGENT, "kiln");
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 5L);
  // libcurl drops Authorization on redirects to another host: blob storage never sees registry tokens.
  curl_easy_setopt(handle, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a transfer stalled for a minute is dead
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &state);
  if (request.method == "HEAD") {
    curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    bool has_body = request.body_fd >= 0 || !request.body.empty() || request.method == "PUT";
    if (has_body) {
      state.fd = request.body_fd;
      state.offset = request.body_offset;
      state.remaining = request.body_fd >= 0 ? request.body_size : request.body.size();
      state.memory_body = request.body;
      curl_easy_setopt(handle, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(handle, CURLOPT_READFUNCTION, on_upload);
      curl_easy_setopt(handle, CURLOPT_READDATA, &state);
      curl_easy_setopt(handle, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(state.remaining));
    } else {
      curl_easy_setopt(handle, CURLOPT_POST, 1L);
      curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  CURLcode code = curl_easy_perform(handle);
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &response.status);
  curl_slist_free_all(headers);
  handles_->give(handle);
  if (state.error) return *state.error;
  if (code != CURLE_OK) {
    return Error::unavailable(
        fmt::format("{} {}: {}", request.method, request.url, curl_easy_strerror(code)));
  }
  return response;
}

Result<RegistryClient::Response> RegistryClient::send(Request& request) {
  bool answered_challenge = false;
  auto delay = std::chrono::milliseconds(250);
  for (int attempt = 1;; ++attempt) {
    auto response = send_once(request);
    bool transient = !response ? response.error().category() == ErrorCategory::kUnavailable
                               : response->status == 429 || response->status >= 500;
    // A streaming sink has already consumed part of the body: its caller restarts the whole transfer.
    bool retryable = request.sink == nullptr && attempt < options_.max_attempts;
    if (transient && retryable) {
      log::debug(
          "registry request failed; retrying",
          {{"url", request.url}, {"attempt", attempt}, {"delay_ms", static_cast<int64_t>(delay.count())}});
      std::this_thread::sleep_for(delay);  // backoff, not synchronization
      delay *= 2;
      continue;
    }
    if (!response) return response;
    if (response->status == 401 && request.send_authorization && !answered_challenge) {
      answered_challenge = true;
      std::string challenge = response->challenges.empty() ? "" : response->challenges.front();
      for (const std::string& candidate : response->challenges) {
        if (to_lower(candidate).starts_with("bearer")) challenge = candidate;
      }
      KILN_TRY(authenticate(challenge));
      --attempt;
      continue;
    }
    return response;
  }
}

Result<void> RegistryClient::authenticate(const std::string& challenge_header) {
  if (challenge_header.empty())
    return Error(ErrorCategory::kPermissionDenied, "registry answered 401 without a challenge");
  AuthChallenge challenge = KILN_TRY(parse_auth_challenge(challenge_header));
  const auto& credentials = options_.credentials;
  if (challenge.scheme == "basic") {
    if (!credentials) {
      return Error(ErrorCategory::kPermissionDenied,
                   fmt::format("{} requires a username and password (Basic auth)", base_url_));
    }
    std::lock_guard lock(auth_mutex_);
    authorization_ = "Basic " + base64_encode(credentials->username + ":" + credentials->password);
    return ok();
  }
  if (challenge.scheme != "bearer") {
    return Error::unsupported(fmt::format("unsupported registry auth scheme '{}'", challenge.scheme));
  }
  std::string realm = challenge.params["realm"];
  if (!realm.starts_with("https://") && !realm.starts_with("http://")) {
    return Error::protocol(fmt::format("bad token realm '{}'", realm));
  }
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (!challenge.params["service"].empty())
    url += "service=" + percent_encode(challenge.params["service"]) + "&";
  std::vector<std::string> scopes = options_.scopes;
  if (!challenge.params["scope"].empty()) scopes.insert(scopes.begin(), challenge.params["scope"]);
  std::sort(scopes.begin(), scopes.end());
  scopes.erase(std::unique(scopes.begin(), scopes.end()), scopes.end());
  for (const std::string& scope : scopes) url += "scope=" + percent_encode(scope) + "&";
  url.pop_back();
  Request token_request{.url = url, .send_authorization = false};
  if (credentials) {
    token_request.authorization_override =
        "Basic " + base64_encode(credentials->username + ":" + credentials->password);
  }
  Response response = KILN_TRY(send(token_request));
  if (response.status != 200) return status_error("token request", response.status, response.body);
  Json token = KILN_TRY_CONTEXT(parse_json(response.body), "token response");
  std::string value = token.is_object() ? token.value("token", token.value("access_token", "")) : "";
  if (value.empty()) return Error::protocol("token response has no token");
  std::lock_guard lock(auth_mutex_);
  authorization_ = "Bearer " + value;
  return ok();
}

Result<FetchedManifest> RegistryClient::get_manifest(const std::string& repository,
                                                     const std::string& reference) {
  Request request{
      .url = url_for(fmt::format("/v2/{}/manifests/{}", repository, reference)),
      .headers = {fmt::format("Accept: {}, {}, {}, {}", media_type::kOciIndex, media_type::kOciManifest,
                              media_type::kDockerManifestList, media_type::kDockerManifest)}};
  Response response = KILN_TRY(send(request));
  if (response.status != 200) {
    return status_error(fmt::format("manifest {}:{}", repository, reference), response.status, response.body);
  }
  FetchedManifest manifest{.content_type = response.header("content-type"), .body = std::move(response.body)};
  if (std::string digest = response.header("docker-content-digest"); !digest.empty()) {
    manifest.docker_content_digest = digest;
  }
  return manifest;
}

Result<void> RegistryClient::get_blob(const std::string& repository, const Digest& digest,
                                      const std::function<Result<void>(std::string_view)>& sink,
                                      const std::function<void(uint64_t)>& on_bytes) {
  Request request{.url = url_for(fmt::format("/v2/{}/blobs/{}", repository, digest.to_string())),
                  .sink = &sink,
                  .on_bytes = &on_bytes};
  Response response = KILN_TRY(send(request));
  if (response.status != 200) {
    return status_error(fmt::format("blob {}", digest), response.status, response.body);
  }
  return ok();
}

Result<bool> RegistryClient::has_blob(const std::string& repository, const Digest& digest) {
  Request request{.method = "HEAD",
                  .url = url_for(fmt::format("/v2/{}/blobs/{}", repository, digest.to_string()))};
  Response response = KILN_TRY(send(request));
  if (response.status == 200) return true;
  if (response.status == 404) return false;
  return status_error(fmt::format("blob {}", digest), response.status, response.body);
}

Result<bool> RegistryClient::mount_blob(const std::string& repository, const Digest& digest,
                                        const std::string& source_repository) {
  Request request{
      .method = "POST",
      .url = url_for(fmt::format("/v2/{}/blobs/uploads/?mount={}&from={}", repository,
                                 percent_encode(digest.to_string()), percent_encode(source_repository)))};
  Response response = KILN_TRY(send(request));
  if (response.status == 201) return true;
  if (response.status == 202) {
    // The registry opened an upload session instead; abandon it (it expires) and upload normally.
    return false;
  }
  return status_error(fmt::format("mount blob {}", digest), response.status, response.body);
}

Result<void> RegistryClient::upload_blob(const std::string& repository, const Digest& digest, int fd,
                                         uint64_t size, uint64_t chunk_size,
                                         const std::function<void(uint64_t)>& on_bytes) {
  Request start{.method = "POST", .url = url_for(fmt::format("/v2/{}/blobs/uploads/", repository))};
  Response started = KILN_TRY(send(start));
  if (started.status != 202) return status_error("start upload", started.status, started.body);
  std::string location = resolve_location(started.header("location"));
  if (started.header("location").empty()) return Error::protocol("upload session without a Location");

  uint64_t offset = 0;
  if (chunk_size > 0 && size > chunk_size) {
    while (offset < size) {
      uint64_t length = std::min(chunk_size, size - offset);
      std::function<void(uint64_t)> chunk_progress = [&, base = offset](uint64_t sent) {
        on_bytes(base + sent);
      };
      Request patch{.method = "PATCH",
                    .url = location,
                    .headers = {"Content-Type: application/octet-stream",
                                fmt::format("Content-Range: {}-{}", offset, offset + length - 1)},
                    .body_fd = fd,
                    .body_offset = offset,
                    .body_size = length,
                    .on_bytes = &chunk_progress};
      Response patched = KILN_TRY(send(patch));
      if (patched.status != 202) return status_error("upload chunk", patched.status, patched.body);
      if (!patched.header("location").empty()) location = resolve_location(patched.header("location"));
      offset += length;
    }
  }
  std::string put_url = location + (location.find('?') == std::string::npos ? "?" : "&") +
                        "digest=" + percent_encode(digest.to_string());
  std::function<void(uint64_t)> final_progress = [&, base = offset](uint64_t sent) { on_bytes(base + sent); };
  Request put{.method = "PUT",
              .url = put_url,
              .headers = {"Content-Type: application/octet-stream"},
              .body_fd = fd,
              .body_offset = offset,
              .body_size = size - offset,
              .on_bytes = &final_progress};
  Response finished = KILN_TRY(send(put));
  if (finished.status != 201)
    return status_error(fmt::format("upload blob {}", digest), finished.status, finished.body);
  return ok();
}

Result<Digest> RegistryClient::put_manifest(const std::string& repository, const std::string& reference,
                                            const std::string& media_type, const std::string& body) {
  Request request{.method = "PUT",
                  .url = url_for(fmt::format("/v2/{}/manifests/{}", repository, reference)),
                  .headers = {"Content-Type: " + media_type},
                  .body = body};
  Response response = KILN_TRY(send(request));
  if (response.status != 201) {
    return status_error(fmt::format("put manifest {}:{}", repository, reference), response.status,
                        response.body);
  }
  Digest digest = Digest::of(body);
  if (std::string reported = response.header("docker-content-digest");
      !reported.empty() && reported != digest.to_string()) {
    return Error::protocol(fmt::format("registry stored the manifest as {}, expected {}", reported, digest));
  }
  return digest;
}

}  // namespace kiln::image

#include "api/http/router.h"

#include <gtest/gtest.h>

namespace kiln::api::http {
namespace {

Request make_request(std::string method, std::string path) {
  Request request;
  request.method = std::move(method);
  request.target = path;
  request.path = std::move(path);
  return request;
}

Response response_of(Reply reply) {
  EXPECT_TRUE(std::holds_alternative<Response>(reply));
  return std::get<Response>(std::move(reply));
}

Json body_of(const Response& response) {
  return *parse_json(response.body);
}

Handler echo_params() {
  return [](Request& request) -> Result<Reply> {
    Json params = Json::object();
    for (const auto& [name, value] : request.params) params[name] = value;
    return json_response(200, {{"params", params}, {"version", request.api_version}, {"path", request.path}});
  };
}

TEST(Router, CapturesPercentDecodedParams) {
  Router router;
  router.add("POST", "/v1/vms/{id}/start", echo_params());
  Request request = make_request("POST", "/v1/vms/my%20vm/start");
  Response response = response_of(router.dispatch(request));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(body_of(response)["params"]["id"], "my vm");
}

TEST(Router, GreedyCaptureTakesSlashes) {
  Router router;
  router.add("GET", "/images/{name*}/json", echo_params());
  router.add("DELETE", "/images/{name*}", echo_params());
  Request get = make_request("GET", "/images/docker.io/library/alpine:3.19/json");
  EXPECT_EQ(body_of(response_of(router.dispatch(get)))["params"]["name"], "docker.io/library/alpine:3.19");
  Request del = make_request("DELETE", "/images/library/alpine");
  EXPECT_EQ(body_of(response_of(router.dispatch(del)))["params"]["name"], "library/alpine");
}

TEST(Router, TrailingSlashIsTheSameResource) {
  Router router;
  router.add("GET", "/v1/vms", echo_params());
  Request request = make_request("GET", "/v1/vms/");
  EXPECT_EQ(response_of(router.dispatch(request)).status, 200);
}

TEST(Router, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Router router;
  router.add("GET", "/v1/vms/{id}", echo_params());
  router.add("DELETE", "/v1/vms/{id}", echo_params());

  Request missing = make_request("GET", "/v1/nothing");
  Response not_found = response_of(router.dispatch(missing));
  EXPECT_EQ(not_found.status, 404);
  EXPECT_TRUE(body_of(not_found)["message"].is_string());
  EXPECT_EQ(not_found.headers.get("content-type"), "application/json");

  Request wrong = make_request("POST", "/v1/vms/a");
  Response not_allowed = response_of(router.dispatch(wrong));
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_EQ(not_allowed.headers.get("Allow"), "GET, DELETE");
  EXPECT_TRUE(body_of(not_allowed)["message"].is_string());
}

TEST(Router, HandlerErrorsUseTheRoutersShape) {
  Handler failing = [](Request&) -> Result<Reply> { return Error::not_found("no such vm: a"); };

  Router docker;
  docker.add("GET", "/x", failing);
  Request request = make_request("GET", "/x");
  Response docker_response = response_of(docker.dispatch(request));
  EXPECT_EQ(docker_response.status, 404);
  EXPECT_EQ(body_of(docker_response), (Json{{"message", "no such vm: a"}}));

  Router other([](int status, const Error& error) {
    return Json{{"status", status}, {"why", error.message()}};
  });
  other.add("GET", "/x", failing);
  Response other_response = response_of(other.dispatch(request));
  EXPECT_EQ(body_of(other_response), (Json{{"status", 404}, {"why", "no such vm: a"}}));
}

TEST(Router, BadEscapeInPathParamIs400) {
  Router router;
  router.add("GET", "/v1/vms/{id}", echo_params());
  Request request = make_request("GET", "/v1/vms/%zz");
  EXPECT_EQ(response_of(router.dispatch(request)).status, 400);
}

TEST(Router, VersionPrefixStrippingIsOptIn) {
  EXPECT_EQ(split_version_prefix("/v1.41/containers/json")->first, "1.41");
  EXPECT_EQ(split_version_prefix("/v1.41/containers/json")->second, "/containers/json");
  EXPECT_FALSE(split_version_prefix("/version"));
  EXPECT_FALSE(split_version_prefix("/v1.41"));

  Router plain;
  plain.add("GET", "/containers/json", echo_params());
  Request unstripped = make_request("GET", "/v1.41/containers/json");
  EXPECT_EQ(response_of(plain.dispatch(unstripped)).status, 404);

  Router docker;
  docker.set_strip_version_prefix(true);
  docker.add("GET", "/containers/json", echo_params());
  Request versioned = make_request("GET", "/v1.41/containers/json");
  Response response = response_of(docker.dispatch(versioned));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(body_of(response)["version"], "1.41");
  Request bare = make_request("GET", "/containers/json");
  EXPECT_EQ(response_of(docker.dispatch(bare)).status, 200);
}

TEST(Headers, CaseInsensitive) {
  Headers headers;
  headers.add("Content-Type", "a");
  headers.add("X-Multi", "1");
  headers.add("x-multi", "2");
  EXPECT_EQ(headers.get("content-type"), "a");
  headers.set("X-MULTI", "3");
  EXPECT_EQ(headers.get("x-multi"), "3");
  EXPECT_EQ(headers.entries().size(), 2u);
}

}  // namespace
}  // namespace kiln::api::http

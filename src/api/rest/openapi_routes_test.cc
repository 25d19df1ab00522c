// kilnd's routes against the OpenAPI document it serves (docs/api/kiln-v1.yaml, turned into JSON at build
// time by scripts/validate-openapi.py --to-json): every route the main socket serves is documented, every
// documented operation is served, and a request to each documented path (placeholders filled in) reaches
// that operation's route, not the router's 404/405 nor another route. The routes come from the real
// add_kiln_routes() over a real (empty) VmManager; no handler runs.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <regex>
#include <set>

#include "api/rest/openapi_document.h"
#include "api/rest/rest_api.h"
#include "common/json.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"
#include "engine/fake/fake_engine.h"

namespace kiln::api::rest {
namespace {

constexpr std::array<std::string_view, 8> kMethods = {"get",     "put",  "post",  "delete",
                                                      "options", "head", "patch", "trace"};

// {METHOD, path with every parameter written "{}"}: "/v1/images/{name*}/json" (a router pattern) and
// "/v1/images/{name}/json" (its OpenAPI path, where the name's slashes are allowed) are one operation.
using Operation = std::pair<std::string, std::string>;

std::string shape(const std::string& path) {
  static const std::regex kParameter(R"(\{[^}]*\})");
  return std::regex_replace(path, kParameter, "{}");
}

std::string upper(std::string_view method) {
  std::string out(method);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string describe(const std::set<Operation>& operations) {
  std::string out;
  for (const auto& [method, path] : operations) out += "\n  " + method + " " + path;
  return out;
}

std::set<Operation> operations_of(const http::Router& router) {
  std::set<Operation> out;
  for (const auto& route : router.routes()) out.insert({route.method, shape(route.pattern)});
  return out;
}

// The document's operations as {METHOD, path template}; only those tagged `tag` when it is not empty.
std::vector<std::pair<std::string, std::string>> documented(const Json& document, std::string_view tag = {}) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [path, item] : document.at("paths").items()) {
    for (std::string_view method : kMethods) {
      auto operation = item.find(std::string(method));
      if (operation == item.end()) continue;
      if (!tag.empty()) {
        const Json tags = operation->value("tags", Json::array());
        if (std::find(tags.begin(), tags.end(), tag) == tags.end()) continue;
      }
      out.emplace_back(upper(method), path);
    }
  }
  return out;
}

std::set<Operation> shapes_of(const std::vector<std::pair<std::string, std::string>>& operations) {
  std::set<Operation> out;
  for (const auto& [method, path] : operations) out.insert({method, shape(path)});
  return out;
}

// A request path for a documented template: "{id}" -> "p-id". Image names get a slash and a tag, as real
// ones have, so the router's greedy {name*} captures are exercised.
std::string fill(const std::string& path) {
  static const std::regex kImageName(R"(\{name\})");
  static const std::regex kParameter(R"(\{([^}]*)\})");
  std::string filled = std::regex_replace(path, kImageName, "library/busybox:1.36");
  return std::regex_replace(filled, kParameter, "p-$1");
}

class OpenApiRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    document_ = parse_json(read_file(KILN_OPENAPI_JSON).value()).value();
    dir_ = std::make_unique<TempDir>(TempDir::create("openapi-routes-test-").value());
    const std::string& root = dir_->path();
    store_ = daemon::VmStore::open(root).value();
    engine_ = std::make_unique<engine::fake::FakeEngine>();
    images_ = image::ImageStore::open({.root = root}).value();
    vms_ =
        daemon::VmManager::create({.root = root, .run_dir = dir_->path() + "/run", .images = images_.get()},
                                  *store_, events_, *engine_)
            .value();
    context_ = std::make_unique<ApiContext>(ApiContext{.vms = *vms_,
                                                       .events = events_,
                                                       .execs = execs_,
                                                       .images = *images_,
                                                       .scratch_dir = dir_->path() + "/tmp",
                                                       .engine_name = "qemu",
                                                       .accelerator = "tcg"});
  }

  Json document_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<daemon::VmStore> store_;
  daemon::EventBus events_;
  std::unique_ptr<engine::fake::FakeEngine> engine_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<daemon::VmManager> vms_;
  ExecRegistry execs_;
  std::unique_ptr<ApiContext> context_;
};

TEST_F(OpenApiRoutesTest, EveryServedRouteIsDocumentedAndEveryDocumentedOneIsServed) {
  http::Router router;
  add_kiln_routes(router, *context_);
  std::set<Operation> served = operations_of(router);
  std::set<Operation> in_document = shapes_of(documented(document_));
  ASSERT_GT(served.size(), 40u);  // the whole table, not an empty router

  std::set<Operation> undocumented;
  std::set_difference(served.begin(), served.end(), in_document.begin(), in_document.end(),
                      std::inserter(undocumented, undocumented.end()));
  std::set<Operation> unserved;
  std::set_difference(in_document.begin(), in_document.end(), served.begin(), served.end(),
                      std::inserter(unserved, unserved.end()));
  EXPECT_TRUE(undocumented.empty()) << "served but not in docs/api/kiln-v1.yaml:" << describe(undocumented);
  EXPECT_TRUE(unserved.empty()) << "in docs/api/kiln-v1.yaml but not served:" << describe(unserved);
}

TEST_F(OpenApiRoutesTest, EachDocumentedPathReachesItsOwnRoute) {
  http::Router real;
  add_kiln_routes(real, *context_);
  // The same table, in the same (matching) order, with handlers that name their route: the real router's
  // matching without running a handler.
  std::vector<http::Router::RouteInfo> routes = real.routes();
  http::Router markers;
  for (size_t i = 0; i < routes.size(); ++i) {
    markers.add(routes[i].method, routes[i].pattern, [i](http::Request&) -> Result<http::Reply> {
      return http::Reply(http::json_response(200, {{"route", i}}));
    });
  }
  for (const auto& [method, path] : documented(document_)) {
    http::Request request;
    request.method = method;
    request.path = request.target = fill(path);
    http::Reply reply = markers.dispatch(request);
    ASSERT_TRUE(std::holds_alternative<http::Response>(reply));
    const auto& response = std::get<http::Response>(reply);
    ASSERT_EQ(response.status, 200) << method << " " << request.path << " (documented as " << path
                                    << ") is not routed: " << response.body;
    const auto& route = routes.at(parse_json(response.body).value().at("route").get<size_t>());
    EXPECT_EQ(route.method, method);
    EXPECT_EQ(shape(route.pattern), shape(path))
        << method << " " << request.path << " reaches " << route.pattern << ", not " << path;
  }
}

TEST_F(OpenApiRoutesTest, TheAppCatalystPortServesExactlyTheOperationsTaggedAppCatalyst) {
  http::Router router(appcatalyst_error_body);  // as kilnd builds it for --appcatalyst-port
  add_appcatalyst_routes(router, *context_);
  EXPECT_EQ(operations_of(router), shapes_of(documented(document_, "AppCatalyst")));
}

TEST(OpenApiDocument, TheEmbeddedDocumentIsTheFileInTheTree) {
  EXPECT_EQ(kOpenApiDocument, read_file(KILN_OPENAPI_YAML).value());
}

}  // namespace
}  // namespace kiln::api::rest

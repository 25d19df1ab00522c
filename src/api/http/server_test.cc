// Server and client over real sockets: routing, limits, hostile input, keep-alive, listeners, concurrency.
#include "api/http/server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <random>
#include <thread>

#include "api/http/client.h"
#include "api/http/test_support.h"

namespace kiln::api::http {
namespace {

using namespace std::chrono_literals;
using testing::connect_raw;
using testing::read_until_contains;
using testing::read_until_eof;
using testing::send_raw;
using testing::start_server;

Router test_router(ErrorFormatter formatter = docker_error_body) {
  Router router(std::move(formatter));
  router.add("GET", "/v1/vms/{id}", [](Request& request) -> Result<Reply> {
    Json filters = Json::array();
    for (std::string_view value : request.query.get_all("filter")) filters.push_back(value);
    return json_response(200, {{"id", request.param("id")},
                               {"filters", filters},
                               {"agent", request.headers.get("user-agent").value_or("")}});
  });
  router.add("POST", "/v1/echo", [](Request& request) -> Result<Reply> {
    return text_response(200, request.body,
                         std::string(request.headers.get("Content-Type").value_or("text/plain")));
  });
  router.add("POST", "/v1/vms", [](Request& request) -> Result<Reply> {
    Json body = KILN_TRY(request.json_body());
    return json_response(201, {{"created", body["name"]}});
  });
  router.add("GET", "/v1/missing",
             [](Request&) -> Result<Reply> { return Error::not_found("no such vm: x"); });
  router.add("GET", "/v1/throws", [](Request&) -> Result<Reply> { throw std::runtime_error("boom"); });
  return router;
}

TEST(Server, ServesOnUnixAndTcpWithParamsAndQuery) {
  auto test = start_server(test_router());
  for (bool tcp : {false, true}) {
    ClientRequest request{.target = "/v1/vms/my%20vm?filter=a%3D1&filter=b+c"};
    request.headers.set("User-Agent", "kiln-test");
    Result<Response> response = test->client(tcp).request(request);
    ASSERT_TRUE(response) << response.error().message();
    EXPECT_EQ(response->status, 200);
    Json body = *parse_json(response->body);
    EXPECT_EQ(body["id"], "my vm");
    EXPECT_EQ(body["filters"], (Json{"a=1", "b c"}));
    EXPECT_EQ(body["agent"], "kiln-test");
  }
  EXPECT_NE(test->tcp_endpoint.port, 0);
}

TEST(Server, JsonBodiesAndErrorShapes) {
  auto test = start_server(test_router());
  Client client = test->client();
  Result<Response> created = client.request("POST", "/v1/vms", Json{{"name", "web"}});
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 201);
  EXPECT_EQ(parse_json(created->body)->at("created"), "web");

  Result<Response> bad_json =
      client.request(ClientRequest{.method = "POST", .target = "/v1/vms", .body = "{nope"});
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_TRUE(parse_json(bad_json->body)->at("message").is_string());

  Result<Response> missing = client.request("GET", "/v1/missing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(*parse_json(missing->body), (Json{{"message", "no such vm: x"}}));
  Error error = error_from_response(*missing);
  EXPECT_EQ(error.category(), ErrorCategory::kNotFound);
  EXPECT_EQ(error.message(), "no such vm: x");

  Result<Response> unknown = client.request("GET", "/nowhere");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  Result<Response> wrong_method = client.request("DELETE", "/v1/echo");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->headers.get("allow"), "POST");

  Result<Response> threw = client.request("GET", "/v1/throws");
  ASSERT_TRUE(threw);
  EXPECT_EQ(threw->status, 500);
}

// The router's formatter shapes the handlers' errors and the server's own (an unknown path here).
TEST(Server, RouterErrorShape) {
  auto test = start_server(test_router([](int status, const Error& error) {
    return Json{{"status", status}, {"why", error.message()}};
  }));
  Result<Response> missing = test->client().request("GET", "/v1/missing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(*parse_json(missing->body), (Json{{"status", 404}, {"why", "no such vm: x"}}));
  Result<Response> unknown = test->client().request("GET", "/nowhere");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(parse_json(unknown->body)->at("status"), 404);
}

TEST(Server, BodyOverTheLimitIs413) {
  auto test = start_server(test_router(), ServerOptions{.body_limit = 1024});
  Result<Response> small =
      test->client().request(ClientRequest{.method = "POST", .target = "/v1/echo", .body = "hi"});
  ASSERT_TRUE(small);
  EXPECT_EQ(small->body, "hi");

  Result<Response> big = test->client().request(
      ClientRequest{.method = "POST", .target = "/v1/echo", .body = std::string(4096, 'x')});
  ASSERT_TRUE(big) << big.error().message();
  EXPECT_EQ(big->status, 413);

  // A declared length over the limit is refused before any body byte is read.
  UniqueFd fd = connect_raw(test->unix_endpoint);
  send_raw(fd.get(), "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n");
  EXPECT_TRUE(read_until_eof(fd.get()).starts_with("HTTP/1.1 413 "));

  // Chunked bodies are held to the same limit.
  UniqueFd chunked = connect_raw(test->unix_endpoint);
  send_raw(chunked.get(), "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
                              std::string(0x800, 'y') + "\r\n0\r\n\r\n");
  EXPECT_TRUE(read_until_eof(chunked.get()).starts_with("HTTP/1.1 413 "));
}

TEST(Server, MalformedRequestsGet400AndAClosedConnection) {
  auto test = start_server(test_router());
  for (std::string_view garbage :
       {"GARBAGE\r\n\r\n", "GET /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header\r\n\r\n", "GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1/vms/a?x=%zz HTTP/1.1\r\nHost: x\r\n\r\n"}) {
    UniqueFd fd = connect_raw(test->unix_endpoint);
    send_raw(fd.get(), garbage);
    std::string answer = read_until_eof(fd.get());
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 400 ")) << garbage << " -> " << answer;
    EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  }
}

TEST(Server, HeaderTooLargeIs431) {
  auto test = start_server(test_router(), ServerOptions{.header_limit = 4096});
  UniqueFd fd = connect_raw(test->unix_endpoint);
  send_raw(fd.get(), "GET /v1/vms/a HTTP/1.1\r\nX-Big: " + std::string(8192, 'a') + "\r\n\r\n");
  EXPECT_TRUE(read_until_eof(fd.get()).starts_with("HTTP/1.1 431 "));
}

TEST(Server, SlowHeaderTimesOut) {
  auto test = start_server(test_router(), ServerOptions{.header_timeout = 300ms});
  UniqueFd fd = connect_raw(test->unix_endpoint);
  send_raw(fd.get(), "GET /v1/vms/a HTTP/1.1\r\nHost: x\r\n");  // and never the blank line
  auto start = std::chrono::steady_clock::now();
  std::string answer = read_until_eof(fd.get());
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 408 ")) << answer;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);

  // An idle connection is closed silently.
  UniqueFd idle = connect_raw(test->unix_endpoint);
  EXPECT_EQ(read_until_eof(idle.get()), "");
}

TEST(Server, RandomGarbageNeverKillsIt) {
  auto test = start_server(test_router(), ServerOptions{.header_timeout = 200ms, .io_timeout = 200ms});
  std::mt19937 random(1234);
  const std::string prefixes[] = {
      "", "GET / HTTP/1.1\r\n", "POST /v1/echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
      "POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "GET /v1/vms/"};
  for (int round = 0; round < 150; ++round) {
    std::string bytes = prefixes[random() % std::size(prefixes)];
    size_t length = random() % 600;
    for (size_t i = 0; i < length; ++i) bytes.push_back(static_cast<char>(random() % 256));
    UniqueFd fd = connect_raw(round % 2 ? test->tcp_endpoint : test->unix_endpoint);
    send_raw(fd.get(), bytes);
    if (round % 3 == 0) (void)::shutdown(fd.get(), SHUT_WR);  // half requests
    if (round % 5 != 0) (void)read_until_eof(fd.get(), 2s);   // sometimes just hang up
  }
  Result<Response> still = test->client().request("GET", "/v1/vms/ok");
  ASSERT_TRUE(still) << still.error().message();
  EXPECT_EQ(still->status, 200);
}

TEST(Server, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto test = start_server(test_router());
  UniqueFd fd = connect_raw(test->tcp_endpoint);
  send_raw(fd.get(), "GET /v1/vms/one HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string first = read_until_contains(fd.get(), "\"one\"");
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200 ")) << first;
  EXPECT_EQ(first.find("Connection: close"), std::string::npos);
  // Pipelined: two requests in one write, answered in order.
  send_raw(fd.get(),
           "GET /v1/vms/two HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/vms/three HTTP/1.1\r\nHost: x\r\nConnection: "
           "close\r\n\r\n");
  std::string rest = read_until_eof(fd.get());
  size_t two = rest.find("\"two\"");
  size_t three = rest.find("\"three\"");
  ASSERT_NE(two, std::string::npos) << rest;
  ASSERT_NE(three, std::string::npos) << rest;
  EXPECT_LT(two, three);
}

TEST(Server, ExpectContinueGetsA100) {
  auto test = start_server(test_router());
  UniqueFd fd = connect_raw(test->unix_endpoint);
  send_raw(fd.get(),
           "POST /v1/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  EXPECT_TRUE(read_until_contains(fd.get(), "\r\n\r\n").starts_with("HTTP/1.1 100 Continue"));
  send_raw(fd.get(), "body");
  std::string answer = read_until_contains(fd.get(), "body");
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
}

TEST(Server, UnixSocketIsGroupAccessibleAndRemovedOnStop) {
  auto test = start_server(test_router());
  struct stat st {};
  ASSERT_EQ(::stat(test->unix_endpoint.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  test->server->stop();
  EXPECT_NE(::stat(test->unix_endpoint.path.c_str(), &st), 0);
}

TEST(Server, StaleSocketIsReplacedButALiveOneIsRefused) {
  Result<TempDir> dir = TempDir::create("kiln-http-");
  ASSERT_TRUE(dir);
  std::string path = dir->path() + "/api.sock";
  {
    // What a crashed daemon leaves behind: a socket file with nobody listening.
    Result<UniqueFd> stale = listen_unix_socket(path);
    ASSERT_TRUE(stale);
  }
  auto first = *Server::create(test_router());
  Result<Endpoint> bound = first->listen("unix://" + path);
  ASSERT_TRUE(bound) << bound.error().message();

  auto second = *Server::create(test_router());
  Result<Endpoint> refused = second->listen("unix://" + path);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kAlreadyExists);
  // The live server was not disturbed.
  Result<Response> response = Client(*bound).request("GET", "/v1/vms/a");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST(Server, FiftyConcurrentClients) {
  auto test = start_server(test_router());
  std::atomic<int> ok_count = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      Client client = test->client(i % 2 == 0);
      for (int j = 0; j < 4; ++j) {
        Result<Response> response = client.request("GET", fmt::format("/v1/vms/c{}-{}", i, j));
        if (response && response->status == 200 &&
            response->body.find(fmt::format("c{}-{}", i, j)) != std::string::npos)
          ++ok_count;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok_count, 200);
}

TEST(Server, ConnectionsOverTheCapGet503) {
  auto test = start_server(test_router(), ServerOptions{.max_connections = 1});
  UniqueFd holder = connect_raw(test->unix_endpoint);
  for (int i = 0; i < 200 && test->server->connection_count() < 1; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(test->server->connection_count(), 1u);
  UniqueFd refused = connect_raw(test->unix_endpoint);
  EXPECT_TRUE(read_until_eof(refused.get()).starts_with("HTTP/1.1 503 "));
  holder.reset();
  for (int i = 0; i < 200 && test->server->connection_count() > 0; ++i) std::this_thread::sleep_for(10ms);
  Result<Response> response = test->client().request("GET", "/v1/vms/a");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST(Client, ConnectionErrorsSayWhatToCheck) {
  Result<Client> client = Client::create("unix:///nonexistent/kiln/kiln.sock");
  ASSERT_TRUE(client);
  Result<Response> response = client->request("GET", "/v1/vms");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(response.error().message(),
            "cannot connect to kilnd at unix:///nonexistent/kiln/kiln.sock: No such file or directory — is "
            "kilnd running?");
  EXPECT_FALSE(Client::create("ftp://x"));
}

TEST(Client, TimeoutBoundsAStuckServer) {
  Router router;
  router.add("GET", "/slow", [](Request&) -> Result<Reply> {
    std::this_thread::sleep_for(1s);
    return empty_response();
  });
  auto test = start_server(std::move(router));
  Result<Response> response = test->client(false, ClientOptions{.timeout = 100ms}).request("GET", "/slow");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().category(), ErrorCategory::kTimeout);
}

}  // namespace
}  // namespace kiln::api::http

#include "api/http/message.h"

#include <algorithm>

#include "api/http/error_status.h"

namespace kiln::api::http {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& [key, value] : entries_) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

void Headers::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

void Headers::add(std::string name, std::string value) {
  entries_.emplace_back(std::move(name), std::move(value));
}

void Headers::remove(std::string_view name) {
  std::erase_if(entries_, [&](const auto& entry) { return iequals(entry.first, name); });
}

std::string_view Request::param(std::string_view name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string_view{} : std::string_view(it->second);
}

Result<Json> Request::json_body() const {
  if (body.empty()) return Error::invalid_argument("request body is empty; expected JSON");
  return KILN_TRY_CONTEXT(parse_json(body), "request body");
}

Response json_response(int status, const Json& body) {
  Response response{.status = status};
  response.headers.set("Content-Type", "application/json");
  // Replace invalid UTF-8 rather than throw: handler data (container names, logs) is not ours to trust.
  response.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  response.body.push_back('\n');
  return response;
}

Response text_response(int status, std::string body, std::string content_type) {
  Response response{.status = status, .body = std::move(body)};
  response.headers.set("Content-Type", std::move(content_type));
  return response;
}

Response empty_response(int status) {
  return Response{.status = status};
}

Json docker_error_body(int /*status*/, const Error& error) {
  return Json{{"message", error.message()}};
}

Response error_response(const Error& error, const ErrorFormatter& format) {
  int status = http_status_for(error);
  return json_response(status, format(status, error));
}

}  // namespace kiln::api::http

// Docker's `filters` query parameter: a JSON object of filter name -> values, in both of the shapes clients
// send: {"label": ["a=b"]} (old clients, docker-py) and {"label": {"a=b": true}} (the current docker CLI).
// Names are checked against what the route supports, as dockerd does ("invalid filter 'x'"). Plain values.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/http/query.h"
#include "common/error.h"

namespace kiln::api::docker {

class Filters {
 public:
  // An absent or empty `filters` parameter is no filter. kInvalidArgument for malformed JSON, values that are
  // neither form, and names outside `supported`.
  static Result<Filters> parse(const http::QueryParams& query, const std::set<std::string_view>& supported);

  bool has(std::string_view name) const { return values_.contains(name); }
  const std::vector<std::string>& get(std::string_view name) const;
  // For yes/no filters ("dangling"): nullopt when absent; kInvalidArgument for anything but true/false/1/0.
  Result<std::optional<bool>> boolean(std::string_view name) const;
  bool empty() const { return values_.empty(); }

 private:
  std::map<std::string, std::vector<std::string>, std::less<>> values_;
};

// Docker's reference filter: "busybox", "busybox:1.*", "*/app:latest". A pattern without a tag matches every
// tag of the repository. `familiar` is "name:tag" as `docker images` shows it.
bool reference_matches(std::string_view pattern, std::string_view familiar);
// Shell-style glob (*, ?, [...]) on a whole string; '*' does not cross '/', as Go's path.Match.
bool glob_matches(std::string_view pattern, std::string_view text);
// dockerd's MatchKVList: every "key" or "key=value" of `wanted` is among the labels (true when none is
// asked).
bool labels_match_all(const std::vector<std::string>& wanted,
                      const std::map<std::string, std::string>& labels);
// dockerd's filters.Match: one of `patterns` is a regular expression found anywhere in `value` (one that does
// not compile matches nothing); no patterns: true.
bool regex_matches(const std::vector<std::string>& patterns, const std::string& value);
// `value` is one of `values`; no values: true.
bool exact_match(const std::vector<std::string>& values, const std::string& value);

}  // namespace kiln::api::docker

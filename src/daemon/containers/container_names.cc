#include "daemon/containers/container_names.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace kiln::daemon::containers {
namespace {

// Kiln's own lists, in moby's spirit: moods on the left, people of computing and science on the right.
constexpr std::array<std::string_view, 48> kAdjectives = {
    "admiring", "boring",    "affectionate",  "amazing",   "awesome",   "blissful",  "bold",     "brave",
    "charming", "clever",    "compassionate", "competent", "confident", "cool",      "dazzling", "determined",
    "eager",    "ecstatic",  "elegant",       "epic",      "exciting",  "festive",   "focused",  "friendly",
    "funny",    "gallant",   "gifted",        "happy",     "hopeful",   "inspiring", "jolly",    "keen",
    "kind",     "laughing",  "loving",        "lucid",     "magical",   "modest",    "nice",     "optimistic",
    "peaceful", "practical", "quirky",        "relaxed",   "serene",    "sharp",     "vibrant",  "zealous"};

constexpr std::array<std::string_view, 48> kSurnames = {
    "agnesi",  "allen",    "archimedes", "babbage",  "bartik",  "bell",     "boole",    "borg",
    "cerf",    "curie",    "dijkstra",   "einstein", "euclid",  "euler",    "feynman",  "franklin",
    "gauss",   "goldberg", "goodall",    "hamilton", "hawking", "hopper",   "hypatia",  "johnson",
    "kepler",  "knuth",    "lamarr",     "lamport",  "liskov",  "lovelace", "mccarthy", "meitner",
    "noether", "pascal",   "perlman",    "ritchie",  "shannon", "sinoussi", "thompson", "torvalds",
    "turing",  "villani",  "wilson",     "wing",     "wozniak", "wright",   "yonath",   "zhukovsky"};

bool allowed_first(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool allowed_rest(char c) {
  return allowed_first(c) || c == '_' || c == '.' || c == '-';
}

}  // namespace

Result<std::string> validate_container_name(std::string_view name) {
  std::string_view bare = name.starts_with('/') ? name.substr(1) : name;
  bool valid = bare.size() >= 2 && allowed_first(bare.front()) &&
               std::all_of(bare.begin() + 1, bare.end(), allowed_rest);
  if (!valid) {
    return Error::invalid_argument(
        fmt::format("Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name));
  }
  return std::string(bare);
}

std::string generate_container_name(std::mt19937_64& random, int retry) {
  for (;;) {
    std::string_view adjective = kAdjectives[random() % kAdjectives.size()];
    std::string_view surname = kSurnames[random() % kSurnames.size()];
    if (adjective == "boring" && surname == "wozniak") continue;
    std::string name = fmt::format("{}_{}", adjective, surname);
    if (retry > 0) name += static_cast<char>('0' + random() % 10);
    return name;
  }
}

Result<std::string> unique_container_name(std::mt19937_64& random,
                                          const std::function<bool(const std::string&)>& taken) {
  constexpr int kAttempts = 64;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string name = generate_container_name(random, attempt);
    if (!taken(name)) return name;
  }
  return Error::internal("could not generate a container name that is not taken");
}

}  // namespace kiln::daemon::containers

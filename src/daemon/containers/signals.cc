#include "daemon/containers/signals.h"

#include <fmt/format.h>
#include <signal.h>

#include <cctype>
#include <string>

#include "common/units.h"

namespace kiln::daemon::containers {
namespace {

struct Named {
  std::string_view name;
  int number;
};

// moby's pkg/signal SignalMap for Linux.
constexpr Named kSignals[] = {
    {"ABRT", SIGABRT},     {"ALRM", SIGALRM},   {"BUS", SIGBUS},   {"CHLD", SIGCHLD}, {"CLD", SIGCHLD},
    {"CONT", SIGCONT},     {"FPE", SIGFPE},     {"HUP", SIGHUP},   {"ILL", SIGILL},   {"INT", SIGINT},
    {"IO", SIGIO},         {"IOT", SIGIOT},     {"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"POLL", SIGPOLL},
    {"PROF", SIGPROF},     {"PWR", SIGPWR},     {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV}, {"STKFLT", SIGSTKFLT},
    {"STOP", SIGSTOP},     {"SYS", SIGSYS},     {"TERM", SIGTERM}, {"TRAP", SIGTRAP}, {"TSTP", SIGTSTP},
    {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU},   {"URG", SIGURG},   {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
    {"VTALRM", SIGVTALRM}, {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
};

}  // namespace

Result<int> parse_signal(std::string_view text) {
  auto invalid = [&] { return Error::invalid_argument(fmt::format("Invalid signal: {}", text)); };
  if (text.empty()) return invalid();
  if (std::isdigit(static_cast<unsigned char>(text.front()))) {
    auto number = parse_unsigned<unsigned>(text, "signal", 1U, 64U);
    if (!number) return invalid();
    return static_cast<int>(*number);
  }
  std::string upper;
  for (char c : text) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  std::string_view name = upper;
  if (name.starts_with("SIG")) name.remove_prefix(3);
  for (const auto& known : kSignals) {
    if (known.name == name) return known.number;
  }
  // Real-time signals: RTMIN, RTMIN+N, RTMAX-N.
  auto offset_of = [&](std::string_view base, char sign) -> std::optional<int> {
    if (!name.starts_with(base)) return std::nullopt;
    std::string_view rest = name.substr(base.size());
    if (rest.empty()) return 0;
    if (rest.front() != sign) return std::nullopt;
    auto number = parse_unsigned<unsigned>(rest.substr(1), "signal", 1U, 30U);
    if (!number) return std::nullopt;
    return static_cast<int>(*number);
  };
  if (auto offset = offset_of("RTMIN", '+'); offset && SIGRTMIN + *offset <= SIGRTMAX)
    return SIGRTMIN + *offset;
  if (auto offset = offset_of("RTMAX", '-'); offset && SIGRTMAX - *offset >= SIGRTMIN)
    return SIGRTMAX - *offset;
  return invalid();
}

}  // namespace kiln::daemon::containers

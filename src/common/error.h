// Error and Result<T>: Kiln's one way to report failure. Errors are values with a category (which the API
// layer maps to an HTTP status in one place, src/api/http/error_status.h) and a human message with context.
// Immutable once built; safe to pass between threads.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace kiln {

// A closed set: every failure in Kiln is one of these. Keep it small; add context in the message.
enum class ErrorCategory {
  kInvalidArgument,     // the caller's input is wrong (bad JSON, bad name, bad flag)
  kNotFound,            // the named thing does not exist
  kAlreadyExists,       // a thing with that name/id exists
  kFailedPrecondition,  // valid request, wrong state (pause a stopped VM)
  kPermissionDenied,    // the OS or a registry refused
  kUnavailable,         // a peer (guest, registry, QEMU) is not reachable or went away
  kTimeout,             // a deadline passed
  kCancelled,           // the operation was interrupted on purpose
  kProtocol,            // a peer spoke a protocol wrongly (malformed frame, bad manifest)
  kIo,                  // an OS call failed
  kUnsupported,         // valid but not implemented or not possible here
  kInternal,            // a bug or an impossible state
};

std::string_view to_string(ErrorCategory category);

class [[nodiscard]] Error {
 public:
  Error(ErrorCategory category, std::string message) : category_(category), message_(std::move(message)) {}

  static Error invalid_argument(std::string message) {
    return {ErrorCategory::kInvalidArgument, std::move(message)};
  }
  static Error not_found(std::string message) { return {ErrorCategory::kNotFound, std::move(message)}; }
  static Error already_exists(std::string message) {
    return {ErrorCategory::kAlreadyExists, std::move(message)};
  }
  static Error failed_precondition(std::string message) {
    return {ErrorCategory::kFailedPrecondition, std::move(message)};
  }
  static Error unavailable(std::string message) { return {ErrorCategory::kUnavailable, std::move(message)}; }
  static Error timeout(std::string message) { return {ErrorCategory::kTimeout, std::move(message)}; }
  static Error protocol(std::string message) { return {ErrorCategory::kProtocol, std::move(message)}; }
  static Error unsupported(std::string message) { return {ErrorCategory::kUnsupported, std::move(message)}; }
  static Error internal(std::string message) { return {ErrorCategory::kInternal, std::move(message)}; }
  static Error cancelled(std::string message) { return {ErrorCategory::kCancelled, std::move(message)}; }
  // "what: strerror(errnum)", categorized by errno (ENOENT -> not found, EACCES -> permission denied, ...).
  static Error from_errno(std::string_view what, int errnum);
  // Same, reading the current errno.
  static Error last_os_error(std::string_view what);

  ErrorCategory category() const { return category_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "context: message" (the innermost cause stays at the end).
  Error with_context(std::string_view context) const;

 private:
  ErrorCategory category_;
  std::string message_;
};

// Result<T> holds a T or an Error. Minimal by design: C++20 has no std::expected (see docs/dependencies.md).
template <typename T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(const Error& error) : storage_(error) {}  // NOLINT(google-explicit-constructor): like std::expected
  Result(Error&& error) : storage_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  // The requires-clause keeps this from hiding the copy and move constructors; clang-tidy 14's
  // bugprone-forwarding-reference-overload only understands enable_if, hence the NOLINT.
  // NOLINTBEGIN(bugprone-forwarding-reference-overload, google-explicit-constructor)
  template <typename U = T>
  requires std::is_constructible_v<T, U&&> &&
      (!std::is_same_v<std::remove_cvref_t<U>, Result>)&&(!std::is_same_v<std::remove_cvref_t<U>, Error>)
          Result(U&& value)
      : storage_(std::in_place_index<0>, std::forward<U>(value)) {}
  // NOLINTEND(bugprone-forwarding-reference-overload, google-explicit-constructor)

  bool has_value() const { return storage_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(storage_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(storage_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(storage_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!has_value());
    return std::get<1>(storage_);
  }
  Error&& error() && {
    assert(!has_value());
    return std::get<1>(std::move(storage_));
  }

  template <typename U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> storage_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  using value_type = void;

  Result() = default;
  Result(const Error& error) : error_(error) {}        // NOLINT(google-explicit-constructor)
  Result(Error&& error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return !error_.has_value(); }
  explicit operator bool() const { return has_value(); }
  void value() const { assert(has_value()); }
  const Error& error() const& {
    assert(!has_value());
    return *error_;
  }
  Error&& error() && {
    assert(!has_value());
    return std::move(*error_);
  }

 private:
  std::optional<Error> error_;
};

inline Result<void> ok() {
  return {};
}

}  // namespace kiln

// KILN_TRY(expr): evaluates a Result; on error returns it from the enclosing function, otherwise yields the
// value (moved out). Uses a GNU statement expression, which g++ and clang both support.
#define KILN_TRY(expr)                            \
  ({                                              \
    auto&& kiln_try_result_ = (expr);             \
    if (!kiln_try_result_.has_value()) {          \
      return std::move(kiln_try_result_).error(); \
    }                                             \
    std::move(kiln_try_result_).value();          \
  })

// KILN_TRY_CONTEXT(expr, context): like KILN_TRY but prefixes the error message with `context`.
#define KILN_TRY_CONTEXT(expr, context)                      \
  ({                                                         \
    auto&& kiln_try_result_ = (expr);                        \
    if (!kiln_try_result_.has_value()) {                     \
      return kiln_try_result_.error().with_context(context); \
    }                                                        \
    std::move(kiln_try_result_).value();                     \
  })

template <>
struct fmt::formatter<kiln::Error> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(const kiln::Error& error, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(error.message(), ctx);
  }
};

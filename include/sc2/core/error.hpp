#pragma once
/// \file
/// Errors at API boundaries.
///
/// Everything that can go wrong because of a user's input (a file, a config, a
/// shape, a token id) throws `sc2::Error`, a `std::runtime_error` whose message
/// says what was expected and what was found. Inner loops use `SC2_ASSERT`,
/// which compiles away in release builds. The library never aborts.

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace sc2 {

/// The one exception type the library throws for bad input or failed I/O.
///
///     try { auto st = sc2::Safetensors::open("model.safetensors"); }
///     catch (const sc2::Error& e) { std::cerr << e.what() << '\n'; }
class Error : public std::runtime_error {
public:
  /// Builds an error from a finished message.
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {

/// Formats the message of a failed check and throws it as `sc2::Error`.
template <class... Args>
[[noreturn]] void throw_error(std::string_view file, int line, fmt::format_string<Args...> format, Args&&... args) {
  std::string message = fmt::format(format, std::forward<Args>(args)...);
#ifndef NDEBUG
  if (auto slash = file.rfind('/'); slash != std::string_view::npos) file.remove_prefix(slash + 1);
  message += fmt::format(" [{}:{}]", file, line);
#else
  (void)file, (void)line;
#endif
  throw Error(message);
}

}  // namespace detail
}  // namespace sc2

/// Throws `sc2::Error` with a fmt-formatted message when `cond` is false.
///
///     SC2_CHECK(rows == expected, "tensor '{}': expected {} rows, found {}", name, expected, rows);
#define SC2_CHECK(cond, ...)                                                            \
  do {                                                                                  \
    if (!(cond)) [[unlikely]]                                                           \
      ::sc2::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__);                      \
  } while (0)

/// Throws `sc2::Error` unconditionally with a fmt-formatted message.
#define SC2_FAIL(...) ::sc2::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__)

#ifndef NDEBUG
#include <cassert>
/// Debug-only invariant check for inner loops; free in release builds.
#define SC2_ASSERT(cond) assert(cond)
#else
#define SC2_ASSERT(cond) ((void)0)
#endif

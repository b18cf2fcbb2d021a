// EINTR handling, in one place.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace procpool::platform::detail {

/// Calls `fn` again while it fails with EINTR; returns its last result.
template <class F>
auto retry_on_eintr(F&& fn) {
  auto result = fn();
  while (result == -1 && errno == EINTR)
    result = fn();
  return result;
}

/// Throws std::system_error for errno, naming the call.
[[noreturn]] inline void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace procpool::platform::detail

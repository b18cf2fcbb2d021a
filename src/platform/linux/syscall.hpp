// EINTR handling, and descriptors kept off 0-2, in one place.
#pragma once

#include <fcntl.h>
#include <unistd.h>

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

/// Returns `fd` if it is above 2. Otherwise returns a close-on-exec copy of it above 2 and closes
/// `fd`: a host that closed its stdio (as daemons do) gets new descriptors on 0-2, where its own
/// writes to stderr would land in them and a child's stdio would be placed over them. -1 with
/// errno set if `fd` is -1 (errno untouched) or cannot be copied (then `fd` is closed).
inline int keep_off_stdio(int fd) noexcept {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  const int error = errno;
  ::close(fd);
  errno = error;
  return moved;
}

}  // namespace procpool::platform::detail

// A dedicated worker executable (PoolOptions::worker_command) with the test jobs.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdlib>
#include <procpool/worker.hpp>
#include <string_view>

#include "test_jobs.hpp"

// With PROCPOOL_TEST_DIE_BEFORE_ANSWER naming a file, the fork server that removes that file first
// is SIGKILLed as it is about to answer a request, right after its fork: the worker it forked is
// then known to nobody but the kernel. This program sends nothing else of 4 bytes on descriptor 3
// (the fork server's request channel). It replaces libc's send() for this program alone, so that
// no test hook costs the library anything.
extern "C" __attribute__((visibility("default"))) ssize_t send(int fd, const void* buffer,
                                                               std::size_t size, int flags) {
  if (fd == 3 && size == sizeof(std::int32_t)) {
    const char* claim = std::getenv("PROCPOOL_TEST_DIE_BEFORE_ANSWER");
    if (claim != nullptr && ::unlink(claim) == 0) ::kill(::getpid(), SIGKILL);
  }
  return ::syscall(SYS_sendto, fd, buffer, size, flags, nullptr, 0);
}

// With PROCPOOL_TEST_NO_TID_ADDRESS set, prctl(PR_GET_TID_ADDRESS) fails as on a kernel built
// without CONFIG_CHECKPOINT_RESTORE: a fork server that cannot learn where glibc keeps its thread
// id. Every other prctl goes to the kernel.
extern "C" __attribute__((visibility("default"))) int prctl(int option, ...) noexcept {
  std::va_list arguments;
  va_start(arguments, option);
  unsigned long values[4];
  for (unsigned long& value : values)
    value = va_arg(arguments, unsigned long);
  va_end(arguments);
  if (option == PR_GET_TID_ADDRESS && std::getenv("PROCPOOL_TEST_NO_TID_ADDRESS") != nullptr) {
    errno = EINVAL;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_prctl, option, values[0], values[1], values[2], values[3]));
}

int main(int argc, char** argv) {
  // "--crash-at-start" (given in PoolOptions::worker_command): a broken worker build that dies
  // before it attaches, every time.
  if (argc > 1 && std::string_view(argv[1]) == "--crash-at-start") std::abort();
  return procpool::worker_main(argc, argv, procpool::test::make_test_registry());
}

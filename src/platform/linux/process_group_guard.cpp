// The process-group guard of a worker (a small process that kills the worker's group once the
// worker or the host has gone, where the host adopts orphans) and the reaping of a worker with it.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "platform/linux/syscall.hpp"
#include "platform/platform.hpp"

namespace procpool::platform {

using detail::retry_on_eintr;

namespace {

// Sanitizer runtimes keep per-thread state in thread-local storage, which a second process in the
// same memory (CLONE_VM) would share with the thread that started it.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool share_memory_with_guard = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool share_memory_with_guard = false;
#else
constexpr bool share_memory_with_guard = true;
#endif
#else
constexpr bool share_memory_with_guard = true;
#endif

// One mapping per worker, never unmapped: what the guard's parent needs, its stack (the lower
// half) and the guard's stack (the upper half).
constexpr std::size_t guard_mapping_bytes = 64 * 1024;
struct GuardLaunch {
  int watched;  // the worker's pidfd
  int host;     // the host's pidfd, or -1
  char* guard_stack_top;
  std::atomic<std::int32_t>* report_guard;  // where the guard's pid goes (shared memory), or null
};

// Where the guard finds the pidfds it watches: the worker's, then the host's if it has one.
constexpr int guard_worker_fd = 0;
constexpr int guard_host_fd = 1;

// Starts fn(arg) in a new process (exit signal SIGCHLD) that runs beside this one. Sharing this
// process's memory (CLONE_VM) on the stack below `stack_top` when it can: no page tables are
// copied, which makes it about as cheap as starting a thread. Otherwise a fork. Returns the
// child's pid, or -1 with errno set.
pid_t start_process(int (*fn)(void*), void* arg, char* stack_top) noexcept {
  if (share_memory_with_guard) return ::clone(fn, stack_top, CLONE_VM | SIGCHLD, arg);
  pid_t child = ::fork();
  if (child == 0) ::_exit(fn(arg));
  return child;
}

// The guard: it waits, using no CPU, until the worker or the host has exited, then kills the
// worker's group. It may share the worker's memory (and so the worker's errno, which it never
// reads): only system calls from here on, and nothing read from that memory, which a job may
// write: what it watches is on fixed descriptors, and how many by value. With every signal
// blocked, poll fails only for want of memory, and then it is tried again.
int run_guard(void* arg) noexcept {
  const auto watched = static_cast<nfds_t>(reinterpret_cast<std::intptr_t>(arg));
  // Hold nothing of the worker's: its output pipe would keep the host from seeing end-of-file,
  // and signals aimed at the group (a job's kill(0, SIGTERM)) are not for it.
  sigset_t all;
  ::sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  ::close_range(static_cast<unsigned>(watched), ~0u, 0);
  pollfd exited[2] = {{guard_worker_fd, POLLIN, 0}, {guard_host_fd, POLLIN, 0}};
  while (::poll(exited, watched, -1) < 0) {
  }
  ::kill(0, SIGKILL);  // the worker's group, the guard included
  ::_exit(0);
}

// Puts `from` on descriptor `to` in this process's own descriptor table. False if it cannot.
bool move_descriptor(int from, int to) noexcept {
  return from == to || ::dup2(from, to) == to;
}

// The guard's parent, which exits at once so that the guard is not the worker's child. It runs
// beside the worker, which goes on attaching its segment and saying hello meanwhile; like the
// guard, it makes only system calls.
int run_guard_parent(void* arg) noexcept {
  const auto* launch = static_cast<const GuardLaunch*>(arg);
  // Above the descriptors they go to first, so that neither lands on the other's old number.
  const int worker = ::fcntl(launch->watched, F_DUPFD, guard_host_fd + 1);
  const int host = launch->host < 0 ? -1 : ::fcntl(launch->host, F_DUPFD, guard_host_fd + 1);
  if (worker < 0 || (launch->host >= 0 && host < 0) || !move_descriptor(worker, guard_worker_fd) ||
      (host >= 0 && !move_descriptor(host, guard_host_fd))) {
    ::_exit(2);  // finish_process_group_guard() names the call
  }
  const std::intptr_t watched = host >= 0 ? 2 : 1;
  pid_t guard = start_process(run_guard, reinterpret_cast<void*>(watched), launch->guard_stack_top);
  if (guard > 0 && launch->report_guard != nullptr) {
    launch->report_guard->store(guard, std::memory_order_relaxed);
  }
  ::_exit(guard < 0 ? 1 : 0);
}

}  // namespace

int start_process_group_guard(const char*& failed, int host_pidfd,
                              std::atomic<std::int32_t>* report_starter,
                              std::atomic<std::int32_t>* report_guard) noexcept {
  if (!leave_process_group()) {
    failed = "setpgid";
    return -1;
  }
  void* mapping = ::mmap(nullptr, guard_mapping_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (mapping == MAP_FAILED) {
    failed = "mmap";
    return -1;
  }
  // The worker opens its own pidfd, so nobody has to hold it alive while another process opens
  // one, and the guard's parent need not suspend it (CLONE_VFORK): the guard starts while the
  // worker attaches its segment and says hello, not before (about 0.2 ms less per start).
  const int watched = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  if (watched < 0) {
    failed = "pidfd_open";
    return -1;
  }
  char* base = static_cast<char*>(mapping);
  auto* launch =
      new (base) GuardLaunch{watched, host_pidfd, base + guard_mapping_bytes, report_guard};
  // Two processes: the guard must not be this worker's child, or a job that waits for "all my
  // children" (wait() until ECHILD) would wait for the guard forever.
  const pid_t parent = start_process(run_guard_parent, launch, base + guard_mapping_bytes / 2);
  const int error = errno;
  ::close(watched);  // the guard's parent has its own copy of the descriptor table
  if (parent < 0) {
    errno = error;
    failed = share_memory_with_guard ? "clone" : "fork";
    return -1;
  }
  if (report_starter != nullptr) report_starter->store(parent, std::memory_order_relaxed);
  return parent;
}

namespace {

// Whether `pid` is a child of this process in process group `group`, from /proc/<pid>/stat
// ("pid (comm) state ppid pgrp ...", comm possibly holding spaces and parentheses).
bool is_child_in_group(int pid, int group) noexcept {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[1024];
  const ssize_t length = retry_on_eintr([&] { return ::read(fd, text, sizeof text - 1); });
  ::close(fd);
  if (length <= 0) return false;
  text[length] = '\0';
  const char* end_of_comm = std::strrchr(text, ')');
  if (end_of_comm == nullptr) return false;
  char state = 0;
  int parent = 0;
  int process_group = 0;
  if (std::sscanf(end_of_comm + 1, " %c %d %d", &state, &parent, &process_group) != 3) return false;
  return parent == static_cast<int>(::getpid()) && process_group == group;
}

}  // namespace

std::optional<ExitStatus> reap_worker(int pid, int pidfd, const std::int32_t (&guard_pids)[2],
                                      std::chrono::milliseconds timeout) noexcept {
  int subreaper = 0;
  const bool adopts_orphans =
      (::prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0) == 0 && subreaper != 0) ||
      ::getpid() == 1;
  // Only once it has exited: until it is reaped, no other group can take its id.
  if (adopts_orphans && wait_for_exit(pidfd, std::chrono::milliseconds(0))) ::kill(-pid, SIGKILL);
  std::optional<ExitStatus> status = try_reap(pid);
  if (!status || !adopts_orphans) return status;
  for (const std::int32_t member : guard_pids) {
    if (member <= 0 || member == pid || !is_child_in_group(member, pid)) continue;
    // A child not yet reaped: its pid cannot have been reused.
    UniqueFd member_fd(static_cast<int>(::syscall(SYS_pidfd_open, member, 0)));
    if (!member_fd) continue;
    wait_for_exit(member_fd.get(), timeout);
    try_reap(member);
  }
  return status;
}

const char* finish_process_group_guard(int starter) noexcept {
  int status = 0;
  if (retry_on_eintr([&] { return ::waitpid(starter, &status, 0); }) != starter) return "waitpid";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
    errno = EMFILE;
    return "dup2 (in the guard's parent)";
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    errno = ECHILD;
    return share_memory_with_guard ? "clone (in the guard's parent)"
                                   : "fork (in the guard's parent)";
  }
  return nullptr;
}

}  // namespace procpool::platform

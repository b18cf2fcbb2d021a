// Processes on Linux: spawning through Boost.Process (vfork + exec), pidfds, reaping, signals.
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost 1.81's Process v2 config names boost::optional without including it when
// BOOST_PROCESS_USE_STD_FS is set; include it first.
#include <boost/optional.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/process/v2/default_launcher.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <new>

#include "platform/cgroup.hpp"
#include "platform/linux/syscall.hpp"
#include "platform/platform.hpp"

namespace procpool::platform {

namespace bp = boost::process::v2;
using detail::retry_on_eintr;
using detail::throw_errno;

namespace {

// Moves each sources[i] to targets[i] (distinct targets; one source may go to several), open
// across exec there. Only system calls: it runs in vfork children and in forked workers. A source
// that sits on another's target is first moved out of the way, above every target and
// close-on-exec, so that no dup2 overwrites a source still needed. Returns 0, or errno.
int place_descriptors(int* sources, const int* targets, int count) noexcept {
  int end_of_targets = 0;
  for (int i = 0; i < count; ++i)
    end_of_targets = std::max(end_of_targets, targets[i] + 1);
  for (int i = 0; i < count; ++i) {
    if (sources[i] < end_of_targets && sources[i] != targets[i]) {
      sources[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, end_of_targets);
      if (sources[i] < 0) return errno;
    }
  }
  for (int i = 0; i < count; ++i) {
    if (sources[i] == targets[i]) {
      int flags = ::fcntl(targets[i], F_GETFD);
      if (flags < 0 || ::fcntl(targets[i], F_SETFD, flags & ~FD_CLOEXEC) != 0) return errno;
    } else if (::dup2(sources[i], targets[i]) < 0) {
      return errno;
    }
  }
  return 0;
}

// Places the child's descriptors, open across exec: /dev/null on 0, the output on 1 and 2, the
// doorbell on 3, the segment (if any) on 4 and the descriptor channel (if any) on 5. All in one
// place_descriptors, so that no source is overwritten before it is placed, wherever it sits: a
// host that closed its stdio may have the output on 0, say, the target of /dev/null.
// (Boost 1.81's own posix::bind_fd returns nothing from on_setup, and its process_stdio places
// 0-2 before any other initializer runs, so neither is used.) The targets are contiguous on
// purpose: Boost 1.81's close_all() only closes ranges past the last whitelisted descriptor
// correctly, not gaps between them.
struct InheritedDescriptors {
  static_assert(worker_doorbell_fd == STDERR_FILENO + 1);
  static_assert(worker_segment_fd == worker_doorbell_fd + 1);
  static_assert(worker_channel_fd == worker_segment_fd + 1);
  static constexpr std::array<int, 6> targets{STDIN_FILENO,      STDOUT_FILENO,
                                              STDERR_FILENO,     worker_doorbell_fd,
                                              worker_segment_fd, worker_channel_fd};
  std::array<int, 6> sources;
  int count;  // 4: stdio and the doorbell; 5: and the segment; 6: and the channel

  InheritedDescriptors(int input, int output, int doorbell, int segment, int channel)
      : sources{input, output, output, doorbell, segment, channel},
        count(segment < 0   ? 4
              : channel < 0 ? 5
                            : 6) {}

  bp::error_code on_setup(bp::posix::default_launcher& launcher, const std::filesystem::path&,
                          const char* const*) {
    // 0-2 are on Boost's list already.
    for (int i = STDERR_FILENO + 1; i < count; ++i)
      launcher.fd_whitelist.push_back(targets[i]);
    return {};
  }

  // Runs in the vfork child: only async-signal-safe calls, and nothing written to memory the host
  // reads (`sources` is the host's, so it is copied first).
  bp::error_code on_exec_setup(bp::posix::default_launcher&, const std::filesystem::path&,
                               const char* const*) {
    std::array<int, 6> from = sources;
    if (int error = place_descriptors(from.data(), targets.data(), count)) {
      return bp::error_code(error, bp::system_category());
    }
    return {};
  }
};

// Applies SpawnRequest's restrictions in the vfork child, after the descriptors are in place and
// before exec, so none of the worker's code runs without them. Runs in memory shared with the
// host: only raw system calls. glibc's setgroups/setgid/setuid would not do here: in a
// multi-threaded process they signal every thread of the thread list to change its credentials
// too, and in a vfork child that list is the host's. The raw calls change this task's credentials
// only, which is the child's alone. Limits come first: raising one takes the privileges the uid
// drop then gives up.
struct ChildRestrictions {
  const SpawnRequest& request;
  // Set in the child, read by the host after a failed launch (vfork shares the memory).
  const char* failed_call = nullptr;

  bp::error_code fail(const char* call) {
    failed_call = call;
    return bp::error_code(errno, bp::system_category());
  }

  static bool set_limit(int resource, std::uint64_t value) {
    rlimit limit{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
    return ::syscall(SYS_prlimit64, 0, resource, &limit, nullptr) == 0;
  }

  // "-1000".."1000" without snprintf (not async-signal-safe); returns the length.
  static int format_int(int value, char (&text)[16]) {
    char digits[16];
    int n = 0;
    unsigned magnitude = value < 0 ? 0u - static_cast<unsigned>(value) : value;
    do {
      digits[n++] = static_cast<char>('0' + magnitude % 10);
      magnitude /= 10;
    } while (magnitude != 0);
    int length = 0;
    if (value < 0) text[length++] = '-';
    while (n > 0)
      text[length++] = digits[--n];
    return length;
  }

  // Writes the child's own oom_score_adj. The value stays the child's: the kernel passes a new
  // value on to the processes sharing its memory, but not from a vfork child to its parent.
  static bool set_oom_score_adj(int value) {
    char text[16];
    const int length = format_int(value, text);
    const int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool written = ::write(fd, text, static_cast<std::size_t>(length)) == length;
    const int error = errno;
    ::close(fd);
    errno = error;
    return written;
  }

  bp::error_code on_exec_setup(bp::posix::default_launcher&, const std::filesystem::path&,
                               const char* const*) {
    // The whole child is charged to its cgroup from here on (its memory until the exec is the
    // host's, and stays charged where it is).
    if (request.cgroup_procs_fd >= 0 && !write_self_into(request.cgroup_procs_fd)) {
      return fail("write(cgroup.procs)");
    }
    if (request.oom_score_adj && !set_oom_score_adj(*request.oom_score_adj)) {
      return fail("write(/proc/self/oom_score_adj)");
    }
    if (request.max_open_files && !set_limit(RLIMIT_NOFILE, *request.max_open_files)) {
      return fail("setrlimit(RLIMIT_NOFILE)");
    }
    if (request.core_dump_limit && !set_limit(RLIMIT_CORE, *request.core_dump_limit)) {
      return fail("setrlimit(RLIMIT_CORE)");
    }
    if (const auto& credentials = request.credentials) {
      if (::syscall(SYS_setgroups, 0, nullptr) != 0) return fail("setgroups(0)");
      if (::syscall(SYS_setresgid, credentials->gid, credentials->gid, credentials->gid) != 0) {
        return fail("setresgid");
      }
      if (::syscall(SYS_setresuid, credentials->uid, credentials->uid, credentials->uid) != 0) {
        return fail("setresuid");
      }
    }
    if (request.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      return fail("prctl(PR_SET_NO_NEW_PRIVS)");
    }
    return {};
  }
};

// In the vfork child, first: every signal the host handles back to SIG_DFL, so that none of the
// host's handlers can run on the host's memory once the child unblocks signals. Ignored signals
// stay ignored, as across the exec that follows (and as glibc's posix_spawn leaves them). glibc's
// own signals (32 and 33) are left: its sigaction refuses them, and their handlers act only on
// signals the process sent to one of its own threads, which the child has none of.
void reset_signal_handlers() noexcept {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int signal = 1; signal < NSIG; ++signal) {
    struct sigaction current {};
    if (::sigaction(signal, nullptr, &current) != 0) continue;
    if (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN) continue;
    ::sigaction(signal, &default_action, nullptr);
  }
}

// Boost.Process v2's vfork_launcher, less what must not run in a vfork child, plus what glibc's
// posix_spawn does about signals. Until it execs, the child runs on the host's memory and on the
// stack of the thread that launched it:
// - A host handler run there (a SIGTERM or ^C to the process group) would act on the host's state
//   from a process that is not the host. The launching thread blocks every signal around the
//   vfork, so the child starts with all blocked; it resets the handlers, and restores the host's
//   mask just before execve (the worker starts with the mask it always had: the launching
//   thread's). A signal that came meanwhile is then taken by SIG_DFL, in the child alone.
// - Boost's launcher calls asio's notify_fork(fork_child) in the child, which copies the
//   context's services into a std::vector (an allocation in the host's heap, taking its locks):
//   no execution context here at all.
// - Boost's calls exit() in the child when execve fails, which would run the host's atexit
//   handlers and static destructors in the host's memory, and leaves the child unreaped: this one
//   calls _exit(127), and the parent reaps it.
// The initializers' on_setup and on_exec_setup run through Boost's own dispatch.
struct VforkLauncher : bp::posix::default_launcher {
  // Returns the child's pid, or -1 with `ec` set.
  template <class... Inits>
  int launch(const std::filesystem::path& executable, const std::vector<std::string>& arguments,
             bp::error_code& ec, Inits&... inits) {
    const char* const* argv = build_argv_(executable, arguments);
    ec = bp::posix::detail::on_setup(*this, executable, argv, inits...);
    if (ec) return -1;
    sigset_t all, host_mask;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &host_mask);
    pid = ::vfork();
    if (pid == 0) {
      reset_signal_handlers();
      ec = bp::posix::detail::on_exec_setup(*this, executable, argv, inits...);
      if (!ec) close_all_fds(ec);
      if (!ec) {
        ::sigprocmask(SIG_SETMASK, &host_mask, nullptr);
        ::execve(executable.c_str(), const_cast<char* const*>(argv), const_cast<char* const*>(env));
        ec.assign(errno, bp::system_category());
      }
      ::_exit(127);
    }
    const int vfork_error = errno;  // the child's, if there was one: it shares this thread's errno
    ::pthread_sigmask(SIG_SETMASK, &host_mask, nullptr);
    if (pid < 0) {
      ec.assign(vfork_error, bp::system_category());
      return -1;
    }
    if (ec) {  // set by the child, which has exited
      ::waitpid(pid, nullptr, 0);
      return -1;
    }
    return pid;
  }
};

}  // namespace

SpawnedProcess spawn(const SpawnRequest& request) {
  UniqueFd dev_null(detail::keep_off_stdio(::open("/dev/null", O_RDWR | O_CLOEXEC)));
  if (!dev_null) throw_errno("open(/dev/null)");

  VforkLauncher launcher;
  std::vector<const char*> environment;
  if (request.environment) {
    for (const std::string& entry : *request.environment)
      environment.push_back(entry.c_str());
    environment.push_back(nullptr);
    launcher.env = environment.data();
  }
  const int output = request.output_fd >= 0 ? request.output_fd : dev_null.get();
  InheritedDescriptors descriptors(dev_null.get(), output, request.doorbell_fd, request.segment_fd,
                                   request.channel_fd);
  ChildRestrictions restrictions{request};
  const std::filesystem::path executable(request.executable);
  bp::error_code ec;
  const int pid = launcher.launch(executable, request.arguments, ec, descriptors, restrictions);
  if (pid < 0) {
    std::string what = "cannot start worker '" + request.executable + "'";
    if (restrictions.failed_call) {
      what += std::string(": ") + restrictions.failed_call + " failed in the child";
      if (request.credentials) {
        what += " (run as uid " + std::to_string(request.credentials->uid) + ", gid " +
                std::to_string(request.credentials->gid) + ")";
      }
    }
    throw std::system_error(ec.value(), std::generic_category(), what);
  }
  return watch_child(pid);
}

SpawnedProcess watch_child(int pid) {
  SpawnedProcess spawned;
  spawned.pid = pid;
  // The child is not reaped yet, so its pid cannot have been reused.
  spawned.pidfd =
      UniqueFd(detail::keep_off_stdio(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))));
  if (!spawned.pidfd) {
    int saved = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    errno = saved;
    throw_errno("pidfd_open");
  }
  set_cloexec(spawned.pidfd.get());
  return spawned;
}

std::optional<ExitStatus> try_reap(int pid) noexcept {
  int status = 0;
  pid_t r = retry_on_eintr([&] { return ::waitpid(pid, &status, WNOHANG); });
  if (r == 0) return std::nullopt;
  ExitStatus result;
  if (r < 0) return result;  // ECHILD: the host auto-reaps children; status unknown.
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

void reap_blocking(int pid) noexcept {
  int status = 0;
  retry_on_eintr([&] { return ::waitpid(pid, &status, 0); });
}

static void send_signal(int pidfd, int sig) noexcept {
  ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
}

void terminate_process(int pidfd) noexcept {
  send_signal(pidfd, SIGTERM);
}
void kill_process(int pidfd) noexcept {
  send_signal(pidfd, SIGKILL);
}

bool is_sigkill(int signal) noexcept {
  return signal == SIGKILL;
}

std::string signal_name(int signal) {
  if (const char* abbrev = ::sigabbrev_np(signal)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(signal);
}

std::optional<std::uint64_t> pid_namespace() noexcept {
  struct stat st {};
  if (::stat("/proc/self/ns/pid", &st) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(st.st_ino);
}

bool process_exists(int pid) noexcept {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::optional<std::size_t> thread_count() noexcept {
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return std::nullopt;
  std::size_t threads = 0;
  while (const dirent* entry = ::readdir(tasks)) {
    if (entry->d_name[0] != '.') ++threads;
  }
  ::closedir(tasks);
  if (threads == 0) return std::nullopt;
  return threads;
}

int current_pid() noexcept {
  return static_cast<int>(::getpid());
}

namespace {

// Counted by the pthread_atfork child handler. The child of a multi-threaded process may only do
// async-signal-safe work until it execs: an atomic increment is.
std::atomic<std::uint64_t> forks_seen{0};
std::once_flag fork_handler_registered;

void count_fork_in_child() noexcept {
  forks_seen.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

std::uint64_t watch_forks() {
  // call_once (pthread_once) rather than a flag: a second thread must not go on before the handler
  // is in, or a fork it makes meanwhile would go uncounted.
  std::call_once(fork_handler_registered, [] {
    if (int error = ::pthread_atfork(nullptr, nullptr, count_fork_in_child)) {
      throw std::system_error(error, std::generic_category(), "pthread_atfork");
    }
  });
  return fork_generation();
}

std::uint64_t fork_generation() noexcept {
  return forks_seen.load(std::memory_order_relaxed);
}

bool leave_process_group() noexcept {
  return ::setpgid(0, 0) == 0;
}

bool die_with_parent(int expected_parent) noexcept {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return false;
  // The parent may have died before the request took effect: then we were re-parented already.
  return static_cast<int>(::getppid()) == expected_parent;
}

UniqueFd open_parent_pidfd(int expected_parent) noexcept {
  UniqueFd parent(static_cast<int>(::syscall(SYS_pidfd_open, expected_parent, 0)));
  if (!parent) return parent;
  // Checked after the open: had the parent died before it, its pid could be another process's by
  // now, but this process would have been re-parented first, so getppid() would differ.
  if (static_cast<int>(::getppid()) != expected_parent) {
    errno = ESRCH;
    return UniqueFd();
  }
  return parent;
}

namespace {

// What fork_sibling() restores in the child, learned once by prepare_fork_sibling() in the
// single-threaded fork server.
int* glibc_tid_address = nullptr;
robust_list_head* robust_list = nullptr;
std::size_t robust_list_length = 0;

// The raw clone system call without a new stack (a fork), its arguments in the architecture's
// order: glibc's clone() wrapper needs a function and a stack, and clone3 may be filtered out by a
// container's seccomp profile.
long clone_as_fork(unsigned long flags, std::int32_t* parent_tid, int* child_tid) noexcept {
#if defined(__x86_64__)
  return ::syscall(SYS_clone, flags, nullptr, parent_tid, child_tid, nullptr);
#elif defined(__aarch64__) || defined(__arm__) || defined(__i386__)
  // CONFIG_CLONE_BACKWARDS: the TLS argument comes before the child's tid.
  return ::syscall(SYS_clone, flags, nullptr, parent_tid, nullptr, child_tid);
#else
#error "procpool's fork server: add this architecture's order of the clone system call's arguments"
#endif
}

}  // namespace

const char* prepare_fork_sibling() noexcept {
  int* tid_address = nullptr;
  if (::prctl(PR_GET_TID_ADDRESS, &tid_address, 0, 0, 0) != 0 || tid_address == nullptr) {
    return "prctl(PR_GET_TID_ADDRESS) failed (the kernel needs CONFIG_CHECKPOINT_RESTORE)";
  }
  // glibc gave the kernel the address of its own copy of the thread id; anything else there (a
  // runtime that moved it) and the child would get its id written somewhere glibc never reads.
  if (*tid_address != static_cast<int>(::gettid())) {
    return "the thread-id address the kernel holds is not glibc's (it holds no thread id)";
  }
  void* head = nullptr;
  std::size_t length = 0;
  if (::syscall(SYS_get_robust_list, 0, &head, &length) != 0) {
    head = nullptr;  // no robust futexes in this kernel: none in the child either, as with fork()
    length = 0;
  }
  glibc_tid_address = tid_address;
  robust_list = static_cast<robust_list_head*>(head);
  robust_list_length = length;
  return nullptr;
}

int fork_sibling(std::int32_t* report_pid) noexcept {
  if (glibc_tid_address == nullptr) {
    errno = EINVAL;  // prepare_fork_sibling() has not succeeded
    return -1;
  }
  // As glibc's _Fork: no signal handler may run in the child before its thread state is whole.
  sigset_t all, before;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &before);
  // The kernel writes the child's tid into glibc's copy in the child (glibc's arch_fork does the
  // same) and clears it when the child exits. With CLONE_PARENT the child's exit signal is this
  // process's own (SIGCHLD, as it was spawned); the signal given here is ignored.
  unsigned long flags = CLONE_PARENT | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD;
  if (report_pid != nullptr) flags |= CLONE_PARENT_SETTID;
  const long pid = clone_as_fork(flags, report_pid, glibc_tid_address);
  const int error = errno;
  if (pid == 0 && robust_list != nullptr) {
    // The kernel forgets a thread's robust list in a clone; glibc's _Fork registers it again. This
    // process holds no robust mutex as it forks (it is single-threaded and between requests), so
    // the list the child inherits is empty, as _Fork makes it.
    ::syscall(SYS_set_robust_list, robust_list, robust_list_length);
  }
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  errno = error;
  return static_cast<int>(pid);
}

bool place_forked_worker_descriptors(int output, int doorbell, int segment, int channel) noexcept {
  std::array<int, 5> sources{output, output, doorbell, segment, channel};
  static constexpr std::array<int, 5> targets{STDOUT_FILENO, STDERR_FILENO, worker_doorbell_fd,
                                              worker_segment_fd, worker_channel_fd};
  if (int error = place_descriptors(sources.data(), targets.data(), 5)) {
    errno = error;
    return false;
  }
  return ::close_range(worker_channel_fd + 1, ~0u, 0) == 0;
}

std::string self_executable_path() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  // If the binary was replaced or deleted since start, exec'ing the magic link still runs the image
  // this process was started from.
  if (ec || !std::filesystem::exists(path)) return "/proc/self/exe";
  return path.string();
}

std::string check_executable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::string(::strerror(errno));
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (::access(path.c_str(), X_OK) != 0) return "not executable by this user";
  return {};
}

}  // namespace procpool::platform

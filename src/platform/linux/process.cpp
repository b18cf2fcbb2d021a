// Processes on Linux: spawning through Boost.Process (vfork + exec), pidfds, reaping, signals.
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost 1.81's Process v2 config names boost::optional without including it when
// BOOST_PROCESS_USE_STD_FS is set; include it first.
#include <boost/optional.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/posix/vfork_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <cstdlib>
#include <filesystem>

#include "platform/linux/syscall.hpp"
#include "platform/platform.hpp"

namespace procpool::platform {

namespace bp = boost::process::v2;
using detail::retry_on_eintr;
using detail::throw_errno;

namespace {

// Places the doorbell descriptor at fd 3 in the child and keeps it open across exec. (Boost 1.81's
// own posix::bind_fd returns nothing from on_setup, so it is not used.) Descriptor 3 is contiguous
// with 0-2 on purpose: Boost 1.81's close_all() only closes ranges past the last whitelisted
// descriptor correctly, not gaps between them.
struct DoorbellAtFd3 {
  int source;

  bp::error_code on_setup(bp::posix::default_launcher& launcher, const std::filesystem::path&,
                          const char* const*) {
    launcher.fd_whitelist.push_back(worker_doorbell_fd);
    return {};
  }

  // Runs in the vfork child: only async-signal-safe calls.
  bp::error_code on_exec_setup(bp::posix::default_launcher&, const std::filesystem::path&,
                               const char* const*) {
    if (source == worker_doorbell_fd) {
      int flags = ::fcntl(source, F_GETFD);
      if (flags < 0 || ::fcntl(source, F_SETFD, flags & ~FD_CLOEXEC) != 0) {
        return bp::error_code(errno, bp::system_category());
      }
      return {};
    }
    if (::dup2(source, worker_doorbell_fd) < 0) return bp::error_code(errno, bp::system_category());
    return {};
  }

  // If execve fails, Boost 1.81 calls exit() in the vfork child, which would run the host's atexit
  // handlers and static destructors in the host's own memory. Leave with _exit first. (Boost's
  // SFINAE probes this member with five arguments and calls it with four: hence the template.)
  template <class... Args>
  void on_exec_error(Args&&...) const {
    ::_exit(127);
  }

  // In the parent, when the launch failed after the vfork: Boost returns without reaping the child
  // that could not exec, which would stay a zombie. (Same five/four-argument probe as above.)
  template <class Launcher, class... Args>
  void on_error(Launcher& launcher, Args&&...) const {
    if (launcher.pid > 0) ::waitpid(launcher.pid, nullptr, 0);
  }
};

}  // namespace

SpawnedProcess spawn(const SpawnRequest& request) {
  UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null) throw_errno("open(/dev/null)");

  // A fresh io_context per spawn: Boost.Process notifies the context's services of the fork in
  // the vfork child, which shares the host's memory; a context with no live services makes that a
  // no-op.
  boost::asio::io_context context;
  bp::posix::vfork_launcher launcher;
  bp::error_code ec;
  // (The executor overload: Boost 1.81's execution-context overload drops `ec` and throws.)
  auto child = launcher(context.get_executor(), ec, std::filesystem::path(request.executable),
                        request.arguments,
                        bp::process_stdio{dev_null.get(), request.output_fd, request.output_fd},
                        DoorbellAtFd3{request.doorbell_fd});
  if (ec) {
    throw std::system_error(ec.value(), std::generic_category(),
                            "cannot start worker '" + request.executable + "'");
  }
  SpawnedProcess spawned;
  spawned.pid = child.id();
  // Let go of Boost's handle (it would kill the child on destruction) and watch the child through
  // our own pidfd. The child is not reaped yet, so its pid cannot have been reused.
  child.detach();
  spawned.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, spawned.pid, 0)));
  if (!spawned.pidfd) {
    int saved = errno;
    ::kill(spawned.pid, SIGKILL);
    ::waitpid(spawned.pid, nullptr, 0);
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

std::string signal_name(int signal) {
  if (const char* abbrev = ::sigabbrev_np(signal)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(signal);
}

bool process_exists(int pid) noexcept {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

int current_pid() noexcept {
  return static_cast<int>(::getpid());
}

bool die_with_parent(int expected_parent) noexcept {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return false;
  // The parent may have died before the request took effect: then we were re-parented already.
  return static_cast<int>(::getppid()) == expected_parent;
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

// A host that does what daemons do before it builds its pool, for test_daemon_host:
//   closed_stdio <exec|fork_server>: started with descriptors 0-2 closed;
//   signals <exec|fork_server>: handles SIGTERM and SIGUSR1, ignores SIGHUP, blocks SIGUSR2.
// It builds a one-worker pool, runs jobs, and checks what it can see of its own descriptors and
// threads and of its workers and fork server in /proc. Each check that fails is written as a line
// on descriptor 3 (the test's pipe: stdout may be closed); the exit code is 0 if none failed.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <procpool/procpool.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "test_jobs.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;

namespace {

constexpr int report_fd = 3;
bool failed = false;

void report(const std::string& line) {
  failed = true;
  std::string text = line + "\n";
  [[maybe_unused]] auto n = ::write(report_fd, text.data(), text.size());
}

std::string link_of(int pid, int fd) {
  std::error_code ec;
  auto target = std::filesystem::read_symlink(
      "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec);
  return ec ? "(closed)" : target.string();
}

// Submits "echo" and checks that the text comes back within 20 s.
bool echo(Pool& pool, const std::string& text) {
  JobFuture future = pool.submit("echo", test::bytes(text));
  if (future.wait_for(20s) != std::future_status::ready) {
    report("echo did not finish within 20 s; pool health: " +
           std::string(to_string(pool.stats().health)));
    return false;
  }
  JobResult result = future.get();
  if (!result.ok()) {
    report("echo failed: " + std::string(to_string(result.error().kind)) + ": " +
           result.error().message);
    return false;
  }
  if (test::text(result.value()) != text) {
    report("echo returned '" + test::text(result.value()) + "'");
    return false;
  }
  return true;
}

int worker_pid(Pool& pool) {
  PoolStats stats = pool.stats();
  return stats.workers.size() == 1 ? stats.workers[0].pid : 0;
}

std::vector<int> live_fork_servers() {
  std::vector<int> live;
  for (int pid : test::fork_servers(::getpid())) {
    if (test::process_alive(pid)) live.push_back(pid);
  }
  return live;
}

// What a worker or a fork server must have on 0-2: /dev/null on 0; on 1 and 2 one pipe (a
// worker's output) or /dev/null (a fork server whose host has no stderr).
void check_stdio(const std::string& who, int pid, std::string_view output) {
  const std::string in = link_of(pid, 0), out = link_of(pid, 1), err = link_of(pid, 2);
  if (in != "/dev/null") report(who + "'s descriptor 0 is " + in + ", not /dev/null");
  if (!out.starts_with(output) || err != out) {
    report(who + "'s descriptors 1 and 2 are " + out + " and " + err + ", not one " +
           std::string(output));
  }
}

int closed_stdio(StartMode mode) {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) report("descriptor " + std::to_string(fd) + " was open");
  }
  if (failed) return 1;
  PoolOptions options = test::quiet_options(1);
  options.start_mode = mode;
  Pool pool(options);
  if (!echo(pool, "hello from a daemon")) return 1;
  // The pool's own descriptors keep off 0-2: there, a write to stderr (the default log sink's)
  // would land in one of them.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) {
      report("the host has descriptor " + std::to_string(fd) +
             " open after starting the pool: " + link_of(::getpid(), fd));
    }
  }
  const int worker = worker_pid(pool);
  check_stdio("the worker", worker, "pipe:");
  if (link_of(worker, 3) != "anon_inode:[eventfd]") {
    report("the worker's descriptor 3 is " + link_of(worker, 3) + ", not its doorbell");
  }
  if (!link_of(worker, 5).starts_with("socket:")) {
    report("the worker's descriptor 5 is " + link_of(worker, 5) + ", not its descriptor channel");
  }
  if (mode != StartMode::fork_server) return failed ? 1 : 0;

  // The server's stderr is the host's only if the host had one when it built the pool.
  std::vector<int> servers = live_fork_servers();
  if (servers.size() != 1) {
    report("expected one fork server, found " + std::to_string(servers.size()));
    return 1;
  }
  check_stdio("the fork server", servers[0], "/dev/null");
  // Something else takes fd 2 (here a pipe), as a daemon's next socket would; a fork server
  // started now must not be handed it as its stderr. Its read end stays open here, so that
  // whatever this process writes there is reported below instead of killing it with SIGPIPE.
  int other[2];
  if (::pipe2(other, O_CLOEXEC | O_NONBLOCK) != 0 || ::dup2(other[1], 2) != 2) {
    report(std::string("cannot put a pipe on descriptor 2: ") + std::strerror(errno));
    return 1;
  }
  const int written_to_fd2 = other[0];
  ::close(other[1]);
  ::kill(servers[0], SIGKILL);
  JobFuture exited = pool.submit("exit", Bytes{});  // a start is due: the server is replaced
  if (exited.wait_for(20s) != std::future_status::ready) report("the exit job did not end");
  std::vector<int> now;
  if (!test::eventually([&] {
        now = live_fork_servers();
        return now.size() == 1 && now[0] != servers[0];
      }) ||
      !test::settled(pool, 1)) {
    report("no second fork server and idle worker");
    return 1;
  }
  check_stdio("the second fork server", now[0], "/dev/null");
  echo(pool, "hello again");
  // Nothing in the host writes to a descriptor 2 that is not its stderr (the log sink is quiet).
  char written[512];
  const ssize_t n = ::read(written_to_fd2, written, sizeof written);
  if (n > 0) {
    report("the host wrote to descriptor 2: " + std::string(written, static_cast<std::size_t>(n)));
  }
  ::close(written_to_fd2);
  return failed ? 1 : 0;
}

volatile sig_atomic_t handled = 0;
void record(int) {
  handled = 1;
}

// SigBlk, SigIgn and SigCgt of /proc/<path>/status, as bit masks (bit n-1 is signal n).
struct SignalState {
  std::uint64_t blocked = 0, ignored = 0, caught = 0;
};
std::optional<SignalState> signal_state(const std::string& status_path) {
  std::ifstream file(status_path);
  if (!file) return std::nullopt;
  SignalState state;
  int found = 0;
  for (std::string line; std::getline(file, line);) {
    std::istringstream fields(line);
    std::string name;
    std::uint64_t mask = 0;
    fields >> name >> std::hex >> mask;
    std::uint64_t* field = name == "SigBlk:"   ? &state.blocked
                           : name == "SigIgn:" ? &state.ignored
                           : name == "SigCgt:" ? &state.caught
                                               : nullptr;
    if (field != nullptr) {
      *field = mask;
      ++found;
    }
  }
  if (found != 3) return std::nullopt;
  return state;
}

constexpr std::uint64_t bit(int signal) {
  return std::uint64_t{1} << (signal - 1);
}

std::string hex(std::uint64_t mask) {
  std::ostringstream text;
  text << std::hex << mask;
  return text.str();
}

int signals(StartMode mode) {
  struct sigaction handler {};
  handler.sa_handler = record;
  sigemptyset(&handler.sa_mask);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  if (::sigaction(SIGTERM, &handler, nullptr) != 0 ||
      ::sigaction(SIGUSR1, &handler, nullptr) != 0 || ::signal(SIGHUP, SIG_IGN) == SIG_ERR ||
      ::pthread_sigmask(SIG_BLOCK, &usr2, nullptr) != 0) {
    report(std::string("cannot set up the host's signals: ") + std::strerror(errno));
    return 1;
  }
  PoolOptions options = test::quiet_options(1);
  options.start_mode = mode;
  Pool pool(options);
  if (!echo(pool, "hello")) return 1;
  if (!test::settled(pool, 1)) report("the pool did not settle on one idle worker");
  // Read now, not before the pool: glibc's first pthread_create installs a handler for its own
  // signal 33 (SIGSETXID), which a posix_spawn'd host like this one started with ignored.
  std::optional<SignalState> host = signal_state("/proc/self/status");
  if (!host) {
    report("cannot read /proc/self/status");
    return 1;
  }
  const int worker = worker_pid(pool);
  std::optional<SignalState> started = signal_state("/proc/" + std::to_string(worker) + "/status");
  if (!started) {
    report("cannot read the worker's status");
    return 1;
  }
  // As an exec'd program of this host: its mask and what it ignores, none of its handlers.
  if (started->blocked != host->blocked) {
    report("the worker blocks " + hex(started->blocked) + ", the host " + hex(host->blocked));
  }
  if ((started->blocked & bit(SIGUSR2)) == 0) report("the worker does not block SIGUSR2");
  if (started->ignored != host->ignored) {
    report("the worker ignores " + hex(started->ignored) + ", the host " + hex(host->ignored));
  }
  if ((started->ignored & bit(SIGHUP)) == 0) report("the worker does not ignore SIGHUP");
  if (started->caught & (bit(SIGTERM) | bit(SIGUSR1))) {
    report("the worker catches " + hex(started->caught));
  }
  // Every thread of the host has its mask back once the launches are over.
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::optional<SignalState> thread = signal_state(task.path().string() + "/status");
    if (thread && thread->blocked != host->blocked) {
      report("host thread " + task.path().filename().string() + " blocks " + hex(thread->blocked) +
             " after the launch, not " + hex(host->blocked));
    }
  }
  if (handled) report("a host handler ran");
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  JobRegistry jobs = test::make_test_registry();
  if (auto rc = run_worker_if_requested(argc, argv, jobs)) return *rc;
  if (argc != 3) {
    report("usage: procpool_test_daemon_host <closed_stdio|signals> <exec|fork_server>");
    return 2;
  }
  const std::string_view scenario = argv[1];
  const StartMode mode =
      std::string_view(argv[2]) == "fork_server" ? StartMode::fork_server : StartMode::exec;
  if (scenario == "closed_stdio") return closed_stdio(mode);
  if (scenario == "signals") return signals(mode);
  report("unknown scenario " + std::string(scenario));
  return 2;
}

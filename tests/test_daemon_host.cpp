// A host that does what daemons do before it builds its pool (descriptors 0-2 closed, signal
// handlers installed, signals ignored and blocked) still starts workers, and they start as an
// exec'd program of that host would. Each case runs the helper procpool_test_daemon_host
// (tests/helpers/daemon_host.cpp), so that this process keeps its own stdio and signals; the
// helper does the checks and writes each one that fails on a pipe.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "catch.hpp"

extern char** environ;

namespace {

struct HostOutcome {
  int exit_code = -1;
  std::string report;  // the checks that failed, one a line
};

// Runs the helper with `arguments`, its descriptors 0-2 closed if `close_stdio`, its report pipe
// on descriptor 3, and waits up to a minute for it to end (then kills it).
HostOutcome run_daemon_host(std::vector<std::string> arguments, bool close_stdio) {
  int report[2];
  REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (close_stdio) {
    for (int fd = 0; fd <= 2; ++fd)
      posix_spawn_file_actions_addclose(&actions, fd);
  }
  posix_spawn_file_actions_adddup2(&actions, report[1], 3);
  std::string path = PROCPOOL_TEST_DAEMON_HOST;
  std::vector<char*> argv{path.data()};
  for (std::string& argument : arguments)
    argv.push_back(argument.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(report[1]);
  REQUIRE(spawned == 0);

  // Only the helper holds the write end (its workers and fork server get other descriptors on
  // 3): end of file comes when it exits.
  HostOutcome outcome;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd readable{report[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&readable, 1, static_cast<int>(left.count())) == 0) {
      ::kill(pid, SIGKILL);
      outcome.report += "(the helper did not end within a minute; killed)\n";
      break;
    }
    char buffer[512];
    const ssize_t n = ::read(report[0], buffer, sizeof buffer);
    if (n <= 0) break;
    outcome.report.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(report[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  return outcome;
}

}  // namespace

TEST_CASE("a host with descriptors 0-2 closed starts workers, keeps its descriptors off 0-2") {
  SECTION("exec") {
    HostOutcome outcome = run_daemon_host({"closed_stdio", "exec"}, true);
    INFO(outcome.report);
    CHECK(outcome.report.empty());
    CHECK(outcome.exit_code == 0);
  }
  SECTION("fork_server: and hands its fork server no stderr, even once fd 2 is taken") {
    HostOutcome outcome = run_daemon_host({"closed_stdio", "fork_server"}, true);
    INFO(outcome.report);
    CHECK(outcome.report.empty());
    CHECK(outcome.exit_code == 0);
  }
}

TEST_CASE(
    "workers start with the host's signal mask and ignored signals, and none of its handlers") {
#ifdef PROCPOOL_TEST_TSAN
  // The sanitizer runs vfork as fork and intercepts the mask calls: the host thread's mask after
  // the launch is then the sanitizer's, not the launcher's.
  PROCPOOL_SKIP("ThreadSanitizer replaces vfork and the signal mask calls");
#endif
  SECTION("exec") {
    HostOutcome outcome = run_daemon_host({"signals", "exec"}, false);
    INFO(outcome.report);
    CHECK(outcome.report.empty());
    CHECK(outcome.exit_code == 0);
  }
  SECTION("fork_server") {
    HostOutcome outcome = run_daemon_host({"signals", "fork_server"}, false);
    INFO(outcome.report);
    CHECK(outcome.report.empty());
    CHECK(outcome.exit_code == 0);
  }
}

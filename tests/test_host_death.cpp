// No worker outlives its host: SIGKILL a host mid-job and its workers die, and so do the processes
// its workers started, leaving nothing in /dev/shm. And a host that inherits its workers' orphans
// (a child subreaper) is left no zombie of procpool's making.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

extern char** environ;

namespace {

// The helper host program (tests/helpers/host_process.cpp), started with `mode` (empty: the
// default), its stdout read line by line.
class Host {
 public:
  explicit Host(std::string mode) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::string path = PROCPOOL_TEST_HOST;
    std::vector<char*> argv{path.data()};
    if (!mode.empty()) argv.push_back(mode.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    output_ = out[0];
    REQUIRE(rc == 0);
  }
  ~Host() { ::close(output_); }
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  int pid() const { return pid_; }

  std::string read_line() {
    std::string line;
    char c;
    while (::read(output_, &c, 1) == 1 && c != '\n')
      line += c;
    return line;
  }

  // Reads "<host pid> <worker pid> <worker pid>" and returns the worker pids.
  std::vector<int> read_workers() {
    std::istringstream fields(read_line());
    int reported_host = 0;
    fields >> reported_host;
    REQUIRE(reported_host == pid_);
    std::vector<int> workers;
    for (int pid; fields >> pid;)
      workers.push_back(pid);
    REQUIRE(workers.size() == 2);
    return workers;
  }

  // Waits for the host to exit by itself and returns its exit code (-1 if a signal ended it).
  int exit_code() {
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  void kill_and_reap() {
    REQUIRE(::kill(pid_, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
  }

 private:
  pid_t pid_ = 0;
  int output_ = -1;
};

bool all_gone(const std::vector<int>& pids, std::chrono::milliseconds deadline) {
  return procpool::test::eventually(
      [&] {
        for (int pid : pids) {
          if (procpool::test::process_alive(pid)) return false;
        }
        return true;
      },
      deadline);
}

}  // namespace

TEST_CASE("workers die with a SIGKILLed host and leave no shared memory behind") {
  // The host prints its line once both workers run a job.
  Host host("");
  std::vector<int> workers = host.read_workers();
  for (int pid : workers)
    REQUIRE(procpool::test::process_alive(pid));

  host.kill_and_reap();
  CHECK(all_gone(workers, std::chrono::seconds(5)));
  CHECK(procpool::test::shm_entries_for(host.pid()).empty());
}

TEST_CASE("with StartMode::fork_server, the workers and the fork server die with the host") {
  Host host("fork_server");
  std::vector<int> processes = host.read_workers();
  std::vector<int> servers = procpool::test::fork_servers(host.pid());
  REQUIRE(servers.size() == 1);
  processes.push_back(servers[0]);
  for (int pid : processes)
    REQUIRE(procpool::test::process_alive(pid));

  host.kill_and_reap();
  CHECK(all_gone(processes, std::chrono::seconds(5)));
  CHECK(procpool::test::shm_entries_for(host.pid()).empty());
}

TEST_CASE("a SIGKILLed host mid-load takes its workers and their children with it within 1 s") {
  // "<host pid> <worker pid> <worker pid>\n<grandchild pid>...\n" once every worker has a child of
  // its own and runs a hanging job, with more jobs queued.
  Host host("grandchildren");
  std::vector<int> processes = host.read_workers();
  std::istringstream second(host.read_line());
  std::size_t grandchildren = 0;
  for (int pid; second >> pid; ++grandchildren)
    processes.push_back(pid);
  REQUIRE(grandchildren >= 2);
  for (int pid : processes)
    REQUIRE(procpool::test::process_alive(pid));

  host.kill_and_reap();
#if defined(PROCPOOL_TEST_SANITIZED)
  const auto deadline = std::chrono::seconds(3);  // sanitized processes are slower to tear down
#else
  const auto deadline = std::chrono::seconds(1);  // the bound
#endif
  CHECK(all_gone(processes, deadline));
  for (int pid : processes) {
    INFO("pid " << pid);
    CHECK_FALSE(procpool::test::process_alive(pid));
  }
  CHECK(procpool::test::shm_entries_for(host.pid()).empty());
}

TEST_CASE("a host that is a child subreaper is left no zombie guard by recycled workers") {
  // Each worker's guard (the process that kills the worker's group once the worker has died) is an
  // orphan from the start, so a subreaper host is its parent, and the one to reap it when it
  // exits. (Each recycled worker once left its guard there as a zombie for good.)
#ifdef PROCPOOL_TEST_SANITIZED
  // Sanitized builds start the guard with fork() instead of a clone sharing the worker's memory,
  // and there one zombie is still left (seen in CI's ASan build); not yet understood.
  PROCPOOL_SKIP("a sanitized build's guard (started by fork) still leaves one zombie here");
#endif
  Host host("subreaper");
  const std::string line = host.read_line();
  INFO("the host printed: " << line);
  CHECK(line == "zombies:");
  CHECK(host.exit_code() == 0);
}

namespace {

// Starts the helper host in `mode` (one of its clear_pdeathsig modes), which prints its lines once
// each of its two workers has changed its gid, SIGKILLs it, and checks that both workers are gone
// within `deadline`.
void check_workers_die_with_host(const std::string& mode, std::chrono::milliseconds deadline) {
  INFO(mode);
  Host host(mode);
  std::vector<int> workers = host.read_workers();
  // What makes the test mean something: the kernel did clear the signal.
  REQUIRE(host.read_line() == "pdeathsig 0 0");
  for (int pid : workers)
    REQUIRE(procpool::test::process_alive(pid));

  host.kill_and_reap();
  CHECK(all_gone(workers, deadline));
  for (int pid : workers) {
    INFO("worker " << pid);
    const bool outlived_host = procpool::test::process_alive(pid);
    CHECK_FALSE(outlived_host);
    if (outlived_host) ::kill(pid, SIGKILL);  // not left behind by a failed test
  }
  CHECK(procpool::test::shm_entries_for(host.pid()).empty());
}

}  // namespace

TEST_CASE(
    "a worker whose job cleared its parent-death signal (a credential change) still dies with its "
    "host") {
  if (::geteuid() != 0) PROCPOOL_SKIP("needs root: the job changes its gid");
  std::string mode;
  SECTION("spawned workers") {
    SECTION("idle, waiting for a job") {
      mode = "clear_pdeathsig";
    }
    SECTION("streaming a result") {
      mode = "clear_pdeathsig_streaming";
    }
  }
  SECTION("workers forked by the fork server") {
    SECTION("idle, waiting for a job") {
      mode = "fork_server+clear_pdeathsig";
    }
    SECTION("streaming a result") {
      mode = "fork_server+clear_pdeathsig_streaming";
    }
  }
  // Each worker has changed its gid and is idle, waiting for a job, or runs a job whose result,
  // larger than the ring, comes once the host is gone (streaming).
  check_workers_die_with_host(mode, std::chrono::seconds(5));
}

TEST_CASE(
    "a worker whose job cleared its parent-death signal dies with its host while the job still "
    "runs") {
  if (::geteuid() != 0) PROCPOOL_SKIP("needs root: the job changes its gid");
  std::string mode;
  SECTION("spawned workers") {
    mode = "clear_pdeathsig_running";
  }
  SECTION("workers forked by the fork server") {
    mode = "fork_server+clear_pdeathsig_running";
  }
  // Each worker runs a job that never returns: nothing in the worker waits on the host, so only
  // something outside it can notice the host's death.
  check_workers_die_with_host(mode, std::chrono::seconds(5));
}

// No worker outlives its host: SIGKILL a host mid-job and its workers die, and so do the processes
// its workers started, leaving nothing in /dev/shm.
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

TEST_CASE("workers die with a SIGKILLed host and leave no shared memory behind") {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::string path = PROCPOOL_TEST_HOST;
  char* argv[] = {path.data(), nullptr};
  pid_t host = 0;
  REQUIRE(::posix_spawn(&host, path.c_str(), &actions, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);

  // The host prints "<host pid> <worker pid> <worker pid>" once both workers run a job.
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n')
    line += c;
  ::close(out[0]);
  std::istringstream fields(line);
  int reported_host = 0;
  fields >> reported_host;
  REQUIRE(reported_host == host);
  std::vector<int> workers;
  for (int pid; fields >> pid;)
    workers.push_back(pid);
  REQUIRE(workers.size() == 2);
  for (int pid : workers)
    REQUIRE(procpool::test::process_alive(pid));

  REQUIRE(::kill(host, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);

  CHECK(procpool::test::eventually(
      [&] {
        for (int pid : workers) {
          if (procpool::test::process_alive(pid)) return false;
        }
        return true;
      },
      std::chrono::seconds(5)));
  CHECK(procpool::test::shm_entries_for(host).empty());
}

TEST_CASE("a SIGKILLed host mid-load takes its workers and their children with it within 1 s") {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::string path = PROCPOOL_TEST_HOST;
  std::string mode = "grandchildren";
  char* argv[] = {path.data(), mode.data(), nullptr};
  pid_t host = 0;
  REQUIRE(::posix_spawn(&host, path.c_str(), &actions, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);

  // "<host pid> <worker pid> <worker pid>\n<grandchild pid>...\n" once every worker has a child of
  // its own and runs a hanging job, with more jobs queued.
  auto read_line = [&] {
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n')
      line += c;
    return line;
  };
  std::istringstream first(read_line());
  std::istringstream second(read_line());
  ::close(out[0]);
  int reported_host = 0;
  first >> reported_host;
  REQUIRE(reported_host == host);
  std::vector<int> processes;
  for (int pid; first >> pid;)
    processes.push_back(pid);
  REQUIRE(processes.size() == 2);
  std::size_t grandchildren = 0;
  for (int pid; second >> pid; ++grandchildren)
    processes.push_back(pid);
  REQUIRE(grandchildren >= 2);
  for (int pid : processes)
    REQUIRE(procpool::test::process_alive(pid));

  REQUIRE(::kill(host, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);

#if defined(PROCPOOL_TEST_SANITIZED)
  const auto deadline = std::chrono::seconds(3);  // sanitized processes are slower to tear down
#else
  const auto deadline = std::chrono::seconds(1);  // the bound
#endif
  CHECK(procpool::test::eventually(
      [&] {
        for (int pid : processes) {
          if (procpool::test::process_alive(pid)) return false;
        }
        return true;
      },
      deadline));
  for (int pid : processes) {
    INFO("pid " << pid);
    CHECK_FALSE(procpool::test::process_alive(pid));
  }
  CHECK(procpool::test::shm_entries_for(host).empty());
}

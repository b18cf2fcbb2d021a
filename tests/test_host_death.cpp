// No worker outlives its host: SIGKILL a host mid-job and its workers die, leaving nothing in
// /dev/shm.
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

// A dedicated worker executable (PoolOptions::worker_command) with the test jobs.
#include <procpool/worker.hpp>

#include <cstdlib>
#include <string_view>

#include "test_jobs.hpp"

int main(int argc, char** argv) {
  // "--crash-at-start" (given in PoolOptions::worker_command): a broken worker build that dies
  // before it attaches, every time.
  if (argc > 1 && std::string_view(argv[1]) == "--crash-at-start") std::abort();
  return procpool::worker_main(argc, argv, procpool::test::make_test_registry());
}

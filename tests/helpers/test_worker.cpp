// A dedicated worker executable (PoolOptions::worker_command) with the test jobs.
#include <procpool/worker.hpp>

#include "test_jobs.hpp"

int main(int argc, char** argv) {
  return procpool::worker_main(argc, argv, procpool::test::make_test_registry());
}

// The test binaries' main(): a test binary is also its own worker (self-exec), so it checks for
// procpool's worker arguments before Catch2 sees argv.
#include <procpool/worker.hpp>

#include "test_jobs.hpp"

#if PROCPOOL_CATCH_MAJOR >= 3
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

int main(int argc, char** argv) {
  procpool::JobRegistry jobs = procpool::test::make_test_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;
  return Catch::Session().run(argc, argv);
}

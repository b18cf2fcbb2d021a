// A host that starts a pool, occupies every worker with a hanging job, prints
// "<host pid> <worker pid>..." and waits to be killed. test_host_death SIGKILLs it.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <procpool/procpool.hpp>
#include <thread>

#include "test_jobs.hpp"
#include "test_support.hpp"

int main(int argc, char** argv) {
  procpool::JobRegistry jobs = procpool::test::make_test_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  procpool::Pool pool(procpool::test::quiet_options(2));
  std::vector<procpool::JobFuture> running;
  for (int i = 0; i < 2; ++i)
    running.push_back(pool.submit("hang", procpool::Bytes{}));
  bool busy = procpool::test::eventually([&] {
    auto stats = pool.stats();
    return stats.in_flight == 2;
  });
  if (!busy) return 1;
  std::printf("%d", static_cast<int>(::getpid()));
  for (const auto& w : pool.stats().workers)
    std::printf(" %d", w.pid);
  std::printf("\n");
  std::fflush(stdout);
  for (;;)
    ::pause();
}

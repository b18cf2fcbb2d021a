// Nothing is left behind: after 100,000 jobs with crashes, timeouts, handler errors, unknown names
// and cancellations, every per-job table is empty, host RSS and descriptors are flat, and after
// the pool is gone there is no child, no zombie and no /dev/shm entry.
#include <unistd.h>

#include <atomic>
#include <procpool/procpool.hpp>
#include <thread>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;

namespace {

struct Mix {
  std::uint64_t ok = 0, handler = 0, crashed = 0, timeout = 0, unknown = 0, cancelled = 0;
};

// Runs `count` jobs in batches (so memory reflects bookkeeping, not outstanding futures) and
// checks every outcome against the job it belongs to.
Mix run_mixed(Pool& pool, int first, int count) {
  Mix mix;
  constexpr int batch = 1000;
  SubmitOptions short_timeout;
  short_timeout.timeout = 20ms;
  for (int start = first; start < first + count; start += batch) {
    std::vector<std::pair<int, JobFuture>> futures;
    futures.reserve(batch);
    for (int i = start; i < start + batch; ++i) {
      if (i % 5000 == 17) {
        futures.emplace_back(i, pool.submit("sigkill", Bytes{}));
      } else if (i % 10000 == 29) {
        futures.emplace_back(i, pool.submit("hang", Bytes{}, short_timeout));
      } else if (i % 100 == 3) {
        futures.emplace_back(i, pool.submit("fail", test::bytes("x")));
      } else if (i % 1000 == 5) {
        futures.emplace_back(i, pool.submit("missing", Bytes{}));
      } else {
        futures.emplace_back(i, pool.submit("echo", test::bytes(std::to_string(i))));
        if (i % 1000 == 7) pool.cancel(futures.back().second.id());
      }
    }
    for (auto& [i, future] : futures) {
      JobResult r = future.get();
      if (r.ok()) {
        REQUIRE(test::text(r.value()) == std::to_string(i));
        ++mix.ok;
        continue;
      }
      switch (r.error().kind) {
        case ErrorKind::handler_error:
          ++mix.handler;
          break;
        case ErrorKind::worker_crashed:
          ++mix.crashed;
          break;
        case ErrorKind::timeout:
          ++mix.timeout;
          break;
        case ErrorKind::unknown_job:
          ++mix.unknown;
          break;
        case ErrorKind::cancelled:
          ++mix.cancelled;
          break;
        default:
          FAIL("unexpected outcome " << to_string(r.error().kind) << ": " << r.error().message);
      }
    }
  }
  return mix;
}

}  // namespace

TEST_CASE("100,000 mixed jobs leave no bookkeeping, no growth and nothing behind") {
  const int host = ::getpid();
  const std::size_t fds_before = test::open_fd_count();
  {
    Pool pool(test::quiet_options(2));
    run_mixed(pool, 0, 10'000);  // warm-up: allocator pools, worker replacements, lazy init
    REQUIRE(test::eventually([&] {
      auto s = pool.stats();
      return s.workers.size() == 2 && s.workers[0].state == WorkerState::idle &&
             s.workers[1].state == WorkerState::idle;
    }));
    const std::size_t fds_warm = test::open_fd_count();
    const std::uint64_t rss_warm = test::self_rss_bytes();

    Mix mix = run_mixed(pool, 10'000, 90'000);

    PoolStats stats = pool.stats();
    CHECK(stats.tracked_jobs == 0);
    CHECK(stats.queued == 0);
    CHECK(stats.in_flight == 0);
    CHECK(mix.crashed == 18);
    CHECK(mix.timeout == 9);
    CHECK(mix.handler == 900);
    CHECK(mix.unknown == 90);
    // 90 echo jobs were cancelled right after submit: each is either cancelled or ran.
    CHECK(mix.cancelled <= 90);
    CHECK(mix.ok + mix.cancelled == 88'893 + 90);
    CHECK(stats.succeeded + stats.failed == stats.submitted);

    REQUIRE(test::eventually([&] {
      auto s = pool.stats();
      return s.workers.size() == 2 && s.workers[0].state == WorkerState::idle &&
             s.workers[1].state == WorkerState::idle;
    }));
    CHECK(test::open_fd_count() == fds_warm);
#if !defined( \
    PROCPOOL_TEST_SANITIZED)  // AddressSanitizer quarantines freed memory: RSS grows by design
    const std::uint64_t rss_end = test::self_rss_bytes();
    INFO("host RSS after warm-up " << rss_warm / 1024 << " KiB, after 90,000 more jobs "
                                   << rss_end / 1024 << " KiB");
    CHECK(rss_end <= rss_warm + (std::uint64_t{4} << 20));
#else
    (void)rss_warm;
#endif
  }
  CHECK(test::child_pids(host).empty());
  CHECK(test::zombie_children(host).empty());
  CHECK(test::shm_entries_for(host).empty());
  CHECK(test::open_fd_count() == fds_before);
}

TEST_CASE("recycling workers many times leaks no descriptor and no segment") {
  const StartMode mode = GENERATE(StartMode::exec, StartMode::fork_server);
  INFO("start mode " << (mode == StartMode::exec ? "exec" : "fork_server"));
  const int host = ::getpid();
  const std::size_t fds_before = test::open_fd_count();
  {
    PoolOptions options = test::quiet_options(2);
    options.start_mode = mode;
    options.restart_storm_threshold = 1000;  // a crash every job is the point here, not a storm
    options.restart_backoff_initial = 0ms;
    options.restart_backoff_max = 0ms;
    Pool pool(options);
    for (int i = 0; i < 100; ++i) {
      JobResult r = pool.submit("sigkill", Bytes{}).get();
      REQUIRE_FALSE(r.ok());
    }
    CHECK(pool.stats().workers_started >= 100);
    CHECK(pool.stats().tracked_jobs == 0);
  }
  CHECK(test::open_fd_count() == fds_before);
  CHECK(test::zombie_children(host).empty());
  CHECK(test::shm_entries_for(host).empty());
}

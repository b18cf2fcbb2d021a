// Prefetching: a busy worker running short jobs is sent more behind the one it runs, and no job is
// lost, run twice or charged an attempt when that worker leaves before reaching them.
#include <signal.h>

#include <map>
#include <procpool/procpool.hpp>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using test::bytes;
using test::text;

namespace {

// One worker that prefetches whatever its job times are (the adaptive threshold is tested below).
PoolOptions prefetching(std::size_t max_jobs) {
  PoolOptions options = test::quiet_options(1);
  options.prefetch.max_jobs_ahead = max_jobs;
  options.prefetch.when_jobs_take_under = std::chrono::hours(1);
  options.prefetch.max_work_ahead = std::chrono::hours(1);
  return options;
}

std::vector<Bytes> numbered(std::size_t n) {
  std::vector<Bytes> payloads;
  for (std::size_t i = 0; i < n; ++i)
    payloads.push_back(bytes(std::to_string(i)));
  return payloads;
}

bool holds(const Pool& pool, std::size_t in_flight, std::size_t queued) {
  PoolStats stats = pool.stats();
  return stats.in_flight == in_flight && stats.queued == queued;
}

// Runs one job so the worker has a job time; returns the worker's pid.
int warm_up(Pool& pool) {
  JobResult pid = pool.submit("pid", Bytes{}).get();
  REQUIRE(pid.ok());
  return std::stoi(text(pid.value()));
}

// Jobs sent ahead that went back to the queue never count as a retry.
void check_counts(const Pool& pool, std::uint64_t succeeded, std::uint64_t failed) {
  PoolStats stats = pool.stats();
  CHECK(stats.retries == 0);
  CHECK(stats.succeeded == succeeded);
  CHECK(stats.failed == failed);
}

}  // namespace

TEST_CASE("short jobs wait in a busy worker's ring, up to PrefetchPolicy::max_jobs_ahead") {
  Pool pool(prefetching(8));
  warm_up(pool);
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));

  std::vector<JobFuture> batch = pool.submit_batch("echo", numbered(12));
  // The running job plus 8 sent ahead; the other 4 stay in the pool's queue.
  REQUIRE(test::eventually([&] { return holds(pool, 9, 4); }));
  CHECK(pool.cancel(batch[0].id()));   // in the worker's ring, not started: taken back
  CHECK(pool.cancel(batch[11].id()));  // still queued

  gate.release();
  CHECK(text(held.get().value()) == "released");
  for (std::size_t i = 1; i < 11; ++i) {
    JobResult result = batch[i].get();
    REQUIRE(result.ok());
    CHECK(text(result.value()) == std::to_string(i));
  }
  for (std::size_t i : {std::size_t{0}, std::size_t{11}}) {
    JobResult cancelled = batch[i].get();
    REQUIRE_FALSE(cancelled.ok());
    CHECK(cancelled.error().kind == ErrorKind::cancelled);
    CHECK(cancelled.error().attempts == 0);
  }
  CHECK(pool.stats().retries == 0);
}

TEST_CASE("jobs sent ahead to a worker that dies run on its successor without using an attempt") {
  Pool pool(prefetching(8));
  int first_pid = warm_up(pool);
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  std::vector<JobFuture> batch = pool.submit_batch("pid", std::vector<Bytes>(5));
  REQUIRE(test::eventually([&] { return holds(pool, 6, 0); }));

  REQUIRE(::kill(first_pid, SIGKILL) == 0);
  JobResult crashed = held.get();
  REQUIRE_FALSE(crashed.ok());
  CHECK(crashed.error().kind == ErrorKind::worker_crashed);
  for (auto& future : batch) {
    JobResult result = future.get();
    REQUIRE(result.ok());
    CHECK(std::stoi(text(result.value())) != first_pid);
  }
  check_counts(pool, 6, 1);
}

TEST_CASE("prefetching never gives a worker more jobs than its RecyclePolicy::max_jobs leaves it") {
  PoolOptions options = prefetching(64);
  options.workers = 2;
  options.recycle.max_jobs = 3;
  Pool pool(options);
  std::vector<JobFuture> batch = pool.submit_batch("pid", std::vector<Bytes>(60));
  std::map<int, int> jobs_per_worker;
  for (auto& future : batch) {
    JobResult result = future.get();
    REQUIRE(result.ok());
    ++jobs_per_worker[std::stoi(text(result.value()))];
  }
  CHECK(jobs_per_worker.size() >= 20);
  for (const auto& [pid, jobs] : jobs_per_worker) {
    INFO("worker " << pid);
    CHECK(jobs <= 3);
  }
}

TEST_CASE("a worker holds no more jobs ahead than it should finish within max_work_ahead") {
  PoolOptions options = prefetching(64);
  options.prefetch.max_work_ahead = std::chrono::milliseconds(50);
  Pool pool(options);
  // Its job time is now at least 20 ms: at most 50 / 20 = 2 jobs ahead.
  REQUIRE(pool.submit("sleep_ms", test::encode_value<std::uint32_t>(20)).get().ok());
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  std::vector<JobFuture> batch = pool.submit_batch("echo", numbered(10));
  REQUIRE(test::eventually([&] { return pool.stats().in_flight > 1; }));
  PoolStats stats = pool.stats();
  CHECK(stats.in_flight <= 3);
  CHECK(stats.in_flight + stats.queued == 11);
  gate.release();
  CHECK(held.get().ok());
  for (auto& future : batch)
    CHECK(future.get().ok());
}

TEST_CASE("a busy worker holds only its own job when prefetching is off or its jobs are long") {
  PoolOptions options = prefetching(8);
  SECTION("off") {
    options.prefetch.max_jobs_ahead = 0;
  }
  SECTION("jobs longer than when_jobs_take_under") {
    options.prefetch.when_jobs_take_under = std::chrono::microseconds(0);
  }
  SECTION("no work ahead allowed") {
    options.prefetch.max_work_ahead = std::chrono::microseconds(0);
  }
  // A submit does not wake a supervisor whose only worker is busy; the memory sample does, every
  // 10 ms here, and each time it would send jobs ahead if it were allowed to.
  options.recycle.memory_sample_interval = std::chrono::milliseconds(10);
  Pool pool(options);
  warm_up(pool);
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  std::vector<JobFuture> batch = pool.submit_batch("echo", numbered(5));
  REQUIRE(test::eventually([&] { return pool.stats().queued == 5; }));
  // Through at least ten of those wake-ups, nothing leaves the queue.
  CHECK_FALSE(test::eventually([&] { return !holds(pool, 1, 5); }, std::chrono::milliseconds(150)));
  gate.release();
  CHECK(held.get().ok());
  for (auto& future : batch)
    CHECK(future.get().ok());
}

TEST_CASE("shutdown fails the jobs a worker was sent ahead with shutting_down") {
  Pool pool(prefetching(8));
  warm_up(pool);
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  std::vector<JobFuture> batch = pool.submit_batch("echo", numbered(5));
  REQUIRE(test::eventually([&] { return holds(pool, 6, 0); }));

  pool.shutdown(std::chrono::milliseconds(0));
  JobResult stopped = held.get();
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.error().kind == ErrorKind::shutting_down);
  for (auto& future : batch) {
    JobResult result = future.get();
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().kind == ErrorKind::shutting_down);
  }
  CHECK(pool.stats().tracked_jobs == 0);
}

TEST_CASE("jobs sent ahead behind a job that turns out long go to a free worker") {
  PoolOptions options = prefetching(8);
  options.workers = 2;
  // A job running over 300 ms is long: what waits behind it is taken back.
  options.prefetch.when_jobs_take_under = std::chrono::milliseconds(300);
  Pool pool(options);
  // Both workers learn that their jobs are short (20 ms).
  for (auto& warm : pool.submit_batch("sleep_ms", {test::encode_value<std::uint32_t>(20),
                                                   test::encode_value<std::uint32_t>(20)})) {
    REQUIRE(warm.get().ok());
  }
  // The first idle worker (the lower id) gets `long_job`, the other `short_job`; the jobs then
  // sent ahead go to the lower id first, behind the job that turns out long.
  test::Gate long_gate, short_gate;
  JobFuture long_job = pool.submit("wait_fifo", long_gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  JobFuture short_job = pool.submit("wait_fifo", short_gate.payload());
  REQUIRE(test::eventually([&] { return holds(pool, 2, 0); }));
  std::vector<JobFuture> behind = pool.submit_batch("pid", std::vector<Bytes>(5));
  REQUIRE(test::eventually([&] { return holds(pool, 7, 0); }));

  short_gate.release();
  REQUIRE(short_job.get().ok());
  // With the long job still running, every job behind it runs on the other worker.
  int long_pid = 0;
  for (const WorkerStats& worker : pool.stats().workers) {
    if (worker.current_job) long_pid = worker.pid;
  }
  REQUIRE(long_pid != 0);
  for (auto& future : behind) {
    INFO("a job sent ahead still waits behind the long one");
    REQUIRE(future.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    JobResult result = future.get();
    REQUIRE(result.ok());
    CHECK(std::stoi(text(result.value())) != long_pid);
  }
  CHECK(long_job.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
  long_gate.release();
  CHECK(long_job.get().ok());
  check_counts(pool, 9, 0);
}

TEST_CASE("a job sent ahead behind one that times out runs untouched, not killed with it") {
  PoolOptions options = prefetching(8);
  options.kill_grace = std::chrono::milliseconds(1000);
  Pool pool(options);
  const int first_pid = warm_up(pool);
  // It times out at 200 ms, sleeps through the SIGTERM and ends at 500 ms; the SIGKILL comes at
  // 1,200 ms, while the job behind it (800 ms) would still run if the worker had started it: it
  // must go back to the queue, untouched, when its worker is stopped.
  SubmitOptions timed;
  timed.timeout = std::chrono::milliseconds(200);
  JobFuture timed_out =
      pool.submit("sleep_ms_ignoring_term", test::encode_value<std::uint32_t>(500), timed);
  JobFuture behind = pool.submit("sleep_ms", test::encode_value<std::uint32_t>(800));
  JobFuture pid_behind = pool.submit("pid", Bytes{});
  // Its result came before its worker exited: delivered (docs/error-model.md, timeout).
  JobResult first = timed_out.get();
  CHECK(first.ok());
  JobResult second = behind.get();
  INFO((second.ok() ? std::string() : second.error().message));
  REQUIRE(second.ok());
  JobResult third = pid_behind.get();
  REQUIRE(third.ok());
  CHECK(std::stoi(text(third.value())) != first_pid);
  CHECK(pool.stats().retries == 0);
  // The stopped worker leaves once the SIGKILL comes.
  CHECK(test::eventually([&] { return pool.stats().recycles(RecycleReason::job_timeout) == 1; }));
}

TEST_CASE("a retiring worker whose unread jobs are all taken back still leaves") {
  // Jobs of a few microseconds with a 50 us threshold: jobs sent ahead are taken back all the
  // time, from workers retiring for max_jobs (which counts jobs given). Every one of them must
  // still leave and be replaced: once, a retiring worker left with nothing waited for ever.
  PoolOptions options = test::quiet_options(4);
  options.prefetch.max_jobs_ahead = 8;
  options.prefetch.when_jobs_take_under = std::chrono::microseconds(50);
  options.prefetch.max_work_ahead = std::chrono::hours(1);
  options.recycle.max_jobs = 20;
  Pool pool(options);
  std::vector<JobFuture> futures;
  for (int round = 0; round < 40; ++round) {
    for (auto& future : pool.submit_batch("echo", numbered(500)))
      futures.push_back(std::move(future));
  }
  for (auto& future : futures)
    REQUIRE(future.get().ok());
  INFO("workers: " << pool.stats().workers.size());
  CHECK(test::settled(pool, 4));
}

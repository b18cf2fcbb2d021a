// SubmitOptions::deadline bounds the whole life of a job: past at submit, it fails at once; still
// queued at its deadline, it fails deadline_exceeded and is never dispatched; running, its worker
// is stopped as for a timeout and it fails deadline_exceeded; a retry never starts after it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <procpool/procpool.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using test::bytes;
using test::text;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

SubmitOptions with_deadline(Clock::duration from_now) {
  SubmitOptions options;
  options.deadline = Clock::now() + from_now;
  return options;
}

// Jobs of `name` that reached a worker, as the pool's job stats count them.
std::uint64_t reached_a_worker(const Pool& pool, const std::string& name) {
  PoolStats stats = pool.stats();
  auto it = std::find_if(stats.jobs.begin(), stats.jobs.end(),
                         [&](const JobStats& job) { return job.name == name; });
  return it == stats.jobs.end() ? 0 : it->completed + it->failed;
}

}  // namespace

TEST_CASE("a deadline already past at submit fails the job at once") {
  Pool pool(test::quiet_options(1));
  SubmitOptions options;
  options.deadline = Clock::now() - milliseconds(1);
  JobFuture late = pool.submit("echo", bytes("late"), options);
  REQUIRE(late.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  JobResult result = late.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::deadline_exceeded);
  CHECK(result.error().attempts == 0);
  CHECK(pool.stats().failures(ErrorKind::deadline_exceeded) == 1);
}

TEST_CASE("a job still queued at its deadline fails then, and is never dispatched") {
  PoolOptions options = test::quiet_options(1);
  options.prefetch.max_jobs_ahead = 0;
  // Nothing else wakes the supervisor while its one worker is held: no memory sample, and a
  // submit that finds no worker free does not wake it. The deadline must.
  options.recycle.memory_sample_interval = std::chrono::hours(1);
  Pool pool(options);
  test::Gate gate;
  JobFuture running = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  const Clock::time_point submitted = Clock::now();
  JobFuture queued = pool.submit("context", Bytes{}, with_deadline(milliseconds(200)));
  JobFuture patient = pool.submit("echo", bytes("patient"));
  // Its outcome comes at its deadline, while its worker is still held: nothing else ends it.
  REQUIRE(queued.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(Clock::now() - submitted >= milliseconds(200));
  JobResult result = queued.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::deadline_exceeded);
  CHECK(result.error().attempts == 0);
  CHECK(pool.stats().queued == 1);  // the job without a deadline waits on
  gate.release();
  CHECK(running.get().ok());
  CHECK(text(patient.get().value()) == "patient");
  CHECK(reached_a_worker(pool, "context") == 0);
}

TEST_CASE("only a job whose deadline is beyond max_work_ahead is sent ahead") {
  PoolOptions options = test::quiet_options(1);
  options.prefetch.max_jobs_ahead = 4;
  options.prefetch.when_jobs_take_under = std::chrono::hours(1);
  options.prefetch.max_work_ahead = std::chrono::minutes(1);
  Pool pool(options);
  REQUIRE(pool.submit("echo", bytes("warm")).get().ok());
  test::Gate gate;
  JobFuture running = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  // The one whose deadline is far off goes ahead. The other's could pass while it waited behind
  // the running job: it stays in the queue, for an idle worker (and so would every job behind it:
  // prefetch keeps the queue's order).
  JobFuture later = pool.submit("echo", bytes("later"), with_deadline(std::chrono::minutes(5)));
  JobFuture soon = pool.submit("echo", bytes("soon"), with_deadline(std::chrono::seconds(50)));
  REQUIRE(test::eventually([&] {
    PoolStats stats = pool.stats();
    return stats.in_flight == 2 && stats.queued == 1;
  }));
  gate.release();
  CHECK(running.get().ok());
  CHECK(text(soon.get().value()) == "soon");
  CHECK(text(later.get().value()) == "later");
}

TEST_CASE("a running job past its deadline is stopped and fails deadline_exceeded") {
  PoolOptions options = test::quiet_options(1);
  options.kill_grace = milliseconds(100);
  Pool pool(options);
  // A worker ready first: a start slowed down (a sanitizer) must not use up the deadline.
  REQUIRE(pool.submit("echo", bytes("warm")).get().ok());
  test::StartMark mark;
  SubmitOptions submit = with_deadline(std::chrono::seconds(2));
  submit.timeout = std::chrono::seconds(60);  // the deadline comes first
  JobFuture running = pool.submit("mark_then_hang", mark.payload(), submit);
  REQUIRE(test::eventually([&] { return mark.seen(); }));
  JobResult result = running.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::deadline_exceeded);
  CHECK(result.error().attempts == 1);
  CHECK(result.error().message.find("deadline") != std::string::npos);
  CHECK(pool.stats().recycles(RecycleReason::job_timeout) == 1);
  CHECK(pool.submit("echo", bytes("after")).get().ok());
}

TEST_CASE("a timeout that comes before the deadline is still a timeout") {
  PoolOptions options = test::quiet_options(1);
  options.kill_grace = milliseconds(100);
  Pool pool(options);
  SubmitOptions submit = with_deadline(std::chrono::minutes(5));
  submit.timeout = milliseconds(200);
  JobResult result = pool.submit("hang", Bytes{}, submit).get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::timeout);
}

TEST_CASE("a retry never starts after the deadline") {
  PoolOptions options = test::quiet_options(1);
  options.kill_grace = milliseconds(50);
  options.restart_storm_threshold = 1000;
  Pool pool(options);
  REQUIRE(pool.submit("echo", bytes("warm")).get().ok());
  SubmitOptions submit = with_deadline(std::chrono::seconds(2));
  submit.idempotent = true;
  submit.max_attempts = 100;
  submit.timeout = milliseconds(100);  // each attempt times out; a retry follows while it may
  const Clock::time_point deadline = *submit.deadline;
  JobResult result = pool.submit("hang", Bytes{}, submit).get();
  REQUIRE_FALSE(result.ok());
  // Ended by the deadline: the attempt under way stopped, or a retry not started.
  const ErrorKind kind = result.error().kind;
  CHECK((kind == ErrorKind::deadline_exceeded || kind == ErrorKind::timeout));
  if (kind == ErrorKind::timeout) {
    CHECK(result.error().message.find("not retried") != std::string::npos);
  }
  // How many attempts fit depends on how fast workers start again (slowly under a sanitizer); the
  // last retry may have been waiting in the queue when the deadline came.
  const unsigned attempts = result.error().attempts;
  CHECK(attempts >= 1);
  CHECK(attempts < 100);
  CHECK(Clock::now() >= deadline);
  const std::uint64_t retries = pool.stats().retries;
  CHECK((retries == attempts - 1 || retries == attempts));
}

TEST_CASE("many jobs with deadlines, some passing in the queue: exactly one outcome each") {
  PoolOptions options = test::quiet_options(2);
  options.kill_grace = milliseconds(50);
  Pool pool(options);
  constexpr int jobs = 400;
  std::vector<std::atomic<int>> outcomes(jobs);
  std::atomic<int> expired{0}, succeeded{0};
  for (int i = 0; i < jobs; ++i) {
    SubmitOptions submit = with_deadline(milliseconds(i % 50 + 1));
    pool.submit(i % 3 == 0 ? "sleep_ms" : "echo",
                i % 3 == 0 ? test::encode_value<std::uint32_t>(1) : bytes("x"), submit,
                [&, i](JobResult result) {
                  ++outcomes[i];
                  if (result.ok()) {
                    ++succeeded;
                  } else if (result.error().kind == ErrorKind::deadline_exceeded) {
                    ++expired;
                  }
                });
  }
  pool.shutdown(std::chrono::seconds(60));
  for (int i = 0; i < jobs; ++i) {
    INFO("job " << i);
    REQUIRE(outcomes[i] == 1);
  }
  CHECK(expired + succeeded == jobs);
  CHECK(expired > 0);  // none had passed at submit: these passed in the queue
  WARN(expired << " of " << jobs << " passed their deadline");
}
